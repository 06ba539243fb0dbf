"""How much of the accelerator starjax uses: train-step MFU and decode's share of memory bandwidth.

On whatever JAX sees: a 1B-class Llama (random weights; 16 layers, d_model 2048, 32 heads of 64,
8 kv heads, MLP 8192, vocab 32000, tied embeddings: 1.17B parameters) in bfloat16 compute with
float32 weights, flash attention (`model.attention=dot_product`), stacked layers and
`train.remat=dots_saveable`; train steps of 8 x 2048 tokens; decode of 64 rows from a
128-token prompt.
On a CPU the same programs run at a reduced size (`tiny` shape with vocab 4096, 4 x 256 tokens,
16 decode rows)
and the table says so: the figures then describe this machine, not an accelerator.

- train MFU = FLOPs per step / step time / the chip's peak (bfloat16 dense; measured float32
  matmul peak on a CPU). FLOPs per token = 6 x parameters + 12 x layers x d_model x seq_len
  (attention scores and values, forward and backward, causal half not discounted).
- decode share of bandwidth = bytes a decode step must read (every weight once, the KV cache of
  every row up to the step's position) / step time / the chip's HBM bandwidth (a measured copy
  bandwidth on a CPU). Step time = (64 new tokens - 1 new token) / 63 from two calls.

On a GPU it first checks cuDNN's attention against XLA's (`attention_parity`).

Targets on an accelerator (issue 21): train MFU >= 50%, decode >= 60% of HBM bandwidth at 64 rows.

    .venv/bin/python benchmarks/device.py --json     # writes benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import describe_machine, matmul_peak_gflops  # noqa: E402
from results import publish  # noqa: E402

# Peak dense bfloat16 TFLOP/s and HBM TB/s by device kind (vendor data sheets).
CHIPS = {
    "H200": (989.0, 4.8),
    "H100": (989.0, 3.35),
    "A100": (312.0, 2.0),
    "L4": (121.0, 0.3),
    "TPU v4": (275.0, 1.2),
    "TPU v5 lite": (197.0, 0.82),
    "TPU v5e": (197.0, 0.82),
    "TPU v5p": (459.0, 2.76),
    "TPU v6 lite": (918.0, 1.64),
}
FULL = dict(
    model=dict(num_layers=16, d_model=2048, num_heads=32, num_kv_heads=8, mlp_dim=8192, vocab_size=32000),
    batch=8,
    seq=2048,
    rows=64,
)
REDUCED = dict(
    model=dict(num_layers=4, d_model=256, num_heads=4, num_kv_heads=2, mlp_dim=1024, vocab_size=4096), batch=4, seq=256, rows=16
)
PROMPT, NEW = 128, 64


def chip_peaks(kind: str) -> tuple[float, float] | None:
    """(TFLOP/s, TB/s) of a known device kind, else None."""
    for name, peaks in CHIPS.items():
        if name.lower() in kind.lower():
            return peaks
    return None


def copy_bandwidth_gbs(mb: int = 256, repeats: int = 5) -> float:
    """Best read + write GB/s of a NumPy array copy: the CPU's memory bandwidth."""
    a = np.ones(mb * 2**20 // 4, np.float32)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a.copy()
        best = max(best, 2 * a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def build(size: dict, compute_dtype: str):
    from starjax.config import load_config
    from starjax.runtime import start

    m = size["model"]
    # An accelerator runs the settings docs/recipes.md recommends there: flash attention (einsum
    # attention stores 8 x 32 x 2048^2 float32 scores per layer, 132 GiB in all, past an H200),
    # stacked layers, and the matmul outputs kept for the backward pass.
    accel = [] if size is REDUCED else ["model.attention=dot_product", "model.scan_layers=true", "train.remat=dots_saveable"]
    cfg = load_config(
        None,
        [
            *(f"model.{k}={v}" for k, v in m.items()),
            *accel,
            f"model.compute_dtype={compute_dtype}",
            "mesh.data=1",
            "sampler.progress=false",
        ],
    )
    return cfg, start(cfg)


def time_train(cfg, rules, size: dict, steps: int) -> tuple[float, int]:
    """Median step seconds and the parameter count."""
    import jax
    from flax import nnx

    from starjax.model.transformer import count_params, create_model
    from starjax.training.data import device_batch
    from starjax.training.step import compile_train_step, init_state

    b, seq = size["batch"], size["seq"]
    train = dataclasses.replace(cfg.train, batch_size=b, seq_len=seq, warmup_steps=0)
    model = create_model(cfg.model, rules, seed=0)
    graphdef, _ = nnx.split(model)
    state = init_state(model, train, seed=0)
    step = compile_train_step(graphdef, train, rules, state)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg.model.vocab_size, (b, seq)).astype(np.int32)
    batch = device_batch(
        dict(
            tokens=ids,
            targets=np.roll(ids, -1, axis=1),
            positions=np.broadcast_to(np.arange(seq, dtype=np.int32), (b, seq)).copy(),
            segment_ids=np.ones((b, seq), np.int32),
            weights=np.ones((b, seq), np.float32),
        ),
        rules,
    )
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:]), count_params(model)


def time_decode(cfg, rules, rows: int, repeats: int) -> float:
    """Seconds per decode step at `rows` rows: (a 64-token call - a 1-token call) / 63."""
    from starjax.model.transformer import create_model
    from starjax.sampling.engine import Sampler

    class NoEos:
        pad_id, eos_id, extra_stop_ids = 0, -1, []

        def decode(self, ids):
            return ""

    sampler = Sampler(create_model(cfg.model, rules, seed=0), NoEos(), cfg.sampler)
    prompts = np.random.default_rng(1).integers(4, cfg.model.vocab_size, (rows, PROMPT)).tolist()
    kw = dict(engine="fixed", batch_size=rows, num_samples=1, prompt_buckets=[PROMPT], temperature=1.0)

    def call(n: int, seed: int) -> float:
        t = time.perf_counter()
        sampler.generate_ids(prompts, seed, max_new_tokens=n, **kw)
        return time.perf_counter() - t

    call(NEW, 0), call(1, 0)  # compile (one program: the new-token count is traced)
    whole = statistics.median(call(NEW, s) for s in range(1, repeats + 1))
    first = statistics.median(call(1, s) for s in range(1, repeats + 1))
    return max(whole - first, 1e-9) / (NEW - 1)


def decode_bytes(cfg, params: int, rows: int) -> float:
    """Bytes one decode step reads: the weights once (float32 stored; the fused decode layout
    is a copy in the same dtype), and each row's keys and values up to the mean position."""
    m = cfg.model
    head_dim = m.head_dim or m.d_model // m.num_heads
    kv_dtype = 2 if m.compute_dtype == "bfloat16" else 4
    mean_len = PROMPT + NEW / 2
    return params * 4 + rows * m.num_layers * 2 * m.num_kv_heads * head_dim * mean_len * kv_dtype


def attention_parity() -> str:
    """On a GPU: the attention training runs (cuDNN's) against XLA's on two packed segments a row,
    bfloat16, output and gradients. A line for the table's note; raises when they disagree."""
    import jax
    import jax.numpy as jnp

    from starjax.model import layers

    b, heads, kv_heads, t, d = 2, 8, 4, 512, 64
    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (b, heads, t, d), jnp.bfloat16)
    k, v = (jax.random.normal(x, (b, kv_heads, t, d), jnp.bfloat16) for x in keys[1:])
    seg = (jnp.arange(t) >= 200).astype(jnp.int32)
    mask = jnp.broadcast_to((seg[:, None] == seg[None, :]) & jnp.tril(jnp.ones((t, t), bool)), (b, t, t))

    def run(q, k, v, mask, causal: bool):  # causal: cuDNN where it takes the sizes; not: XLA's
        out, vjp = jax.vjp(lambda q, k, v: layers.dot_product_attention(q, k, v, mask, causal).astype(jnp.float32), q, k, v)
        return (out, *vjp(jnp.ones_like(out)))

    fused, xla = (jax.jit(functools.partial(run, causal=c)) for c in (True, False))
    used = "cudnn$fmha" in fused.lower(q, k, v, mask).compile().as_text()
    worst = 0.0
    for a, r in zip(fused(q, k, v, mask), xla(q, k, v, mask)):
        a, r = a.astype(jnp.float32), r.astype(jnp.float32)
        worst = max(worst, float(jnp.abs(a - r).max() / jnp.abs(r).max()))
    line = f"cuDNN attention {'in' if used else 'NOT in'} the training program; against XLA's, output and gradients within {worst:.1e} of their largest value"
    if not used or worst > 2e-2:
        raise SystemExit(line)
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reduced", action="store_true", help="the CPU size on any device (a quick check)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")

    import jax

    device = jax.devices()[0]
    peaks = chip_peaks(device.device_kind) if device.platform != "cpu" else None
    reduced = args.reduced or device.platform == "cpu"
    size = REDUCED if reduced else FULL
    measured_peak = matmul_peak_gflops()
    if peaks is None:  # a CPU, or a chip not in the table: this machine's measured peaks
        peak_flops, bandwidth = measured_peak * 1e9, copy_bandwidth_gbs() * 1e9
        source = "measured: float32 matmul peak, NumPy copy bandwidth"
    else:
        peak_flops, bandwidth = peaks[0] * 1e12, peaks[1] * 1e12
        source = f"{device.device_kind} data sheet: bfloat16 dense, HBM"
    compute = "float32" if device.platform == "cpu" else "bfloat16"  # bfloat16 is slower on CPUs
    parity = attention_parity() if device.platform == "gpu" else None
    cfg, rules = build(size, compute)
    step_s, params = time_train(cfg, rules, size, args.steps)
    m = cfg.model
    tokens = size["batch"] * size["seq"]
    flops = tokens * (6 * params + 12 * m.num_layers * m.d_model * size["seq"])
    mfu = flops / step_s / peak_flops
    decode_s = time_decode(cfg, rules, size["rows"], args.repeats)
    share = decode_bytes(cfg, params, size["rows"]) / decode_s / bandwidth
    label = "reduced (CPU size)" if reduced else "1B-class"
    columns = ("what", "size", "shape", "params", "seconds", "figure", "unit", "target")
    rows = [
        dict(
            zip(
                columns,
                (
                    "train step",
                    label,
                    f"{size['batch']} x {size['seq']} tokens",
                    params,
                    round(step_s, 4),
                    round(100 * mfu, 1),
                    "% MFU",
                    50.0,
                ),
            )
        ),
        dict(
            zip(
                columns,
                (
                    "decode step",
                    label,
                    f"{size['rows']} rows, prompt {PROMPT} + {NEW} new",
                    params,
                    round(decode_s, 5),
                    round(100 * share, 1),
                    "% of memory bandwidth",
                    60.0,
                ),
            )
        ),
    ]
    table = [
        "| what | model | shape | parameters | seconds (median) | figure | target on an accelerator |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['what']} | {r['size']} | {r['shape']} | {r['params']:,} | {r['seconds']} | {r['figure']} {r['unit']} | >= {r['target']:.0f} |"
        )
    note = f"Peaks: {source} ({peak_flops / 1e12:.2f} TFLOP/s, {bandwidth / 1e9:.0f} GB/s); compute {compute}."
    if reduced:
        note += " A CPU runs the reduced size: these figures describe this machine, not an accelerator."
    if parity is not None:
        note += f" {parity}."
    body = describe_machine(measured_peak) + "\n\n" + note + "\n\n" + "\n".join(table)
    publish(
        "device",
        f"Accelerator use (`{' '.join(['python benchmarks/device.py'] + sys.argv[1:])}`)",
        body,
        rows,
        tuple(rows[0]),
        args,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
