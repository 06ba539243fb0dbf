"""The demo's own compute, timed piece by piece: its compiled train step (configs/demo.yaml's
model, 32 rows) at several row lengths, and its sampler decoding 128 new tokens for 128 rows
(random init: no row stops early), on one CPU device or split over several, with all of the
machine's cores or fewer (`--cores`: 1 against 2 says whether the second core does work or
waits), in the demo's float32 compute or bfloat16 (`--dtype`). Each setting runs in a fresh
process (the device count and the cores XLA's threads may use are fixed when JAX starts). Not
a peer comparison: it says where `make demo`'s minutes go and what a config choice saves.

Train steps and sampler calls also get their rate in GFLOP/s (XLA's count of the compiled
step; for a sampler call, of its decode steps), next to the machine's float32 matmul peak
(`benchmarks/machine.py`), and the last lines are the floor that peak puts under the demo's
train steps (pre-training and all fine-tunes) and, given a finished demo run (`--run`), under
its decoding: the time they would take if every step ran at the peak. With `--run`, the run's
fine-tunes (metrics.jsonl) are also set beside as many steps at the measured median: the share of
their time spent outside the step (data, optimizer state, checkpoints, and the step running
slower inside the run than alone).

    .venv/bin/python benchmarks/demo_step.py --seq-len 128 112 104 --devices 1 2
    .venv/bin/python benchmarks/demo_step.py --seq-len 128 104 --devices 1 --run runs/demo
    .venv/bin/python benchmarks/demo_step.py --seq-len 128 104 --devices 1 --cores 1 2
    .venv/bin/python benchmarks/demo_step.py --seq-len 128 104 --devices 1 --dtype float32 bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from starjax.schema import DTYPES  # the compute dtypes a config may name

ROOT = Path(__file__).resolve().parents[1]


def _measure(kind: str, seq_len: int, devices: int, dtype: str, repeats: int) -> dict:
    """{"seconds": per train step or sampler call, `repeats` times after compiling (in
    this process); "flops": per call as XLA counts them (a sampler call: its decode steps);
    "per_token": a decode step's per row, for a sampler call}."""
    import numpy as np
    from flax import nnx

    from starjax.config import load_config
    from starjax.model.transformer import create_model
    from starjax.runtime import start

    cfg = load_config(
        str(ROOT / "configs" / "demo.yaml"),
        [
            "model.vocab_size=64",
            f"train.seq_len={seq_len}",
            f"runtime.num_cpu_devices={devices}",
            f"mesh.data={devices}",
            f"model.compute_dtype={dtype}",
            # one program over `devices` (the demo's copies per device are `--devices 1`, run twice)
            "sampler.replicas=1",
            "sampler.progress=false",
        ],
    )
    rules = start(cfg)
    model = create_model(cfg.model, rules, seed=0)
    rng = np.random.default_rng(0)
    per_token = None
    if kind == "train":
        from starjax.training.data import device_batch
        from starjax.training.step import compile_train_step, init_state

        b, n = cfg.train.batch_size, seq_len
        state = init_state(model, cfg.train, seed=0)
        step = compile_train_step(nnx.split(model)[0], cfg.train, rules, state)
        batches = [
            device_batch(
                dict(
                    tokens=ids,
                    targets=ids,
                    weights=np.ones((b, n), np.float32),
                    positions=np.broadcast_to(np.arange(n, dtype=np.int32), (b, n)).copy(),
                    segment_ids=np.ones((b, n), np.int32),
                ),
                rules,
            )
            for ids in (rng.integers(0, 64, (b, n)).astype(np.int32) for _ in range(4))
        ]
        flops = _xla_flops(step.lower(state, batches[0]).compile())

        def run(i: int) -> None:
            nonlocal state
            state, metrics = step(state, batches[i % 4])
            float(metrics["loss"])
    else:
        from types import SimpleNamespace

        from starjax.sampling.engine import Sampler

        stub = SimpleNamespace(pad_id=0, eos_id=64, extra_stop_ids=[], decode=lambda ids: "")  # never drawn: rows run to 128
        sampler = Sampler(model, stub, cfg.sampler)
        prompts = [list(rng.integers(1, 60, 19)) for _ in range(cfg.sampler.batch_size)]
        settings = dict(temperature=1.0, stop_ids=[], max_new_tokens=128)

        def run(i: int) -> None:
            sampler.generate_ids(prompts, seed=i, **settings)

        per_token = _decode_flops_per_token(model, rules, len(prompts))
        flops = len(prompts) * settings["max_new_tokens"] * per_token  # the decode steps; the prompt pass aside

    for i in range(2):
        run(i)
    out = []
    for i in range(repeats):
        began = time.perf_counter()
        run(i)
        out.append(time.perf_counter() - began)
    return {"seconds": out, "flops": flops, "per_token": per_token, "dtype": cfg.model.compute_dtype}


def _decode_flops_per_token(model, rules, rows: int) -> float:
    """XLA's count for one decode step of `rows` rows against a cache of a 32-token prompt
    bucket plus 128 new tokens (the demo's), per row."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from starjax.model.kv_cache import KVCache

    graphdef, params = nnx.split(model)

    def one_step(params, cache, tokens):
        positions = jnp.full_like(tokens, 31)
        return nnx.merge(graphdef, params)(tokens, positions, jnp.ones_like(tokens), cache)

    cache = KVCache.init(model.cfg, rules, rows, 32 + 128)
    tokens = jnp.zeros((rows, 1), jnp.int32)
    return _xla_flops(jax.jit(one_step).lower(params, cache, tokens).compile()) / rows


def _generated_tokens(run: Path) -> int:
    """Tokens a STaR run generated (every sample of every iteration, rationalization included,
    each with its stop token), re-encoded with the run's tokenizer."""
    from starjax.run_dir import RunDir
    from starjax.sentencepiece_tokenizer import SentencePieceTokenizer

    run_dir = RunDir.at(run)
    tokenizer = SentencePieceTokenizer(run_dir.tokenizer.read_bytes())
    total = 0
    for iteration in run_dir.sampled_iterations():
        completions = [json.loads(line)["completion"] for line in run_dir.samples(iteration).open()]
        total += sum(len(ids) for ids in tokenizer.encode_batch(completions, add_eos=True))
    return total


def _fine_tunes(run: Path) -> tuple[float, int]:
    """(seconds, train steps) of a STaR run's fine-tunes, from its metrics.jsonl."""
    from starjax.run_dir import RunDir

    lines = [json.loads(line) for line in RunDir.at(run).metrics.open() if line.strip()]
    done = [m for m in lines if m.get("train_steps")]
    return sum(m["seconds"]["train"] for m in done), sum(m["train_steps"] for m in done)


def _xla_flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    return float((analysis[0] if isinstance(analysis, list) else analysis)["flops"])


def _floor(matmul_rate: float, flops: dict, seconds: dict, per_token: float | None, run: Path | None) -> str:
    """The demo's train steps (and with `run`, its decoding) at the matmul peak: a
    bound that no speed-up of those programs passes without cutting the work."""
    from starjax.config import load_config
    from starjax.star.loop import train_steps

    cfg = load_config(str(ROOT / "configs" / "demo.yaml"), [])
    pre, fine = cfg.pretrain.seq_len, cfg.train.seq_len
    if pre not in flops or fine not in flops:
        return f"(no floor: give --seq-len {pre} {fine} and --devices 1, in the demo's compute dtype)"
    steps = sum(train_steps(cfg, i) for i in range(1, cfg.star.iterations + 1))
    train = cfg.pretrain.steps * flops[pre] + steps * flops[fine]
    measured = cfg.pretrain.steps * seconds[pre] + steps * seconds[fine]
    lines = [
        f"The demo's train steps ({cfg.pretrain.steps:,} of {pre} tokens, {steps:,} of {fine}): "
        f"{train / 1e12:.1f} TFLOP; {measured:.0f} s at the medians above, at least "
        f"{train / matmul_rate:.0f} s at the float32 matmul peak of {matmul_rate / 1e9:.1f} GFLOP/s."
    ]
    if run is not None and per_token:
        tokens = _generated_tokens(run)
        decode = tokens * per_token
        lines.append(
            f"Its decoding in {run} ({tokens:,} generated tokens at {per_token / 1e6:.2f} MFLOP each): "
            f"{decode / 1e12:.1f} TFLOP, at least {decode / matmul_rate:.0f} s; train steps and decoding "
            f"together at least {(train + decode) / matmul_rate:.0f} s."
        )
        took, done = _fine_tunes(run)
        if done:
            alone = done * seconds[fine]
            lines.append(
                f"Its fine-tunes: {took:.0f} s for {done:,} steps ({1e3 * took / done:.0f} ms a step), against "
                f"{alone:.0f} s for as many steps alone at the median above: {100 * (took - alone) / took:.0f}% of "
                "their time is not the step itself (meaningful for a run made on this machine at a similar hour)."
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq-len", type=int, nargs="+", default=[128, 104], help="train row lengths")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="CPU device counts")
    parser.add_argument(
        "--cores", type=int, nargs="+", help="how many of this process's CPU cores each setting may use (default: all)"
    )
    parser.add_argument(
        "--dtype", nargs="+", help=f"compute dtypes (model.compute_dtype), of {', '.join(DTYPES)} (default: the demo's)"
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--run",
        type=Path,
        help="a finished demo run directory: add its decoding to the floor and set its fine-tunes beside the measured step",
    )
    parser.add_argument("--one", nargs=5, metavar=("KIND", "SEQ_LEN", "DEVICES", "CORES", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    available = sorted(os.sched_getaffinity(0))
    if args.one:
        kind, seq_len, devices, cores, dtype = args.one
        # before JAX starts: XLA sizes its thread pool by the cores this process may run on
        os.sched_setaffinity(0, available[: int(cores)])
        got = _measure(kind, int(seq_len), int(devices), dtype, args.repeats)
        print(json.dumps({**got, "cores": len(os.sched_getaffinity(0))}))
        return 0
    cores = args.cores or [len(available)]
    if min(cores) < 1 or max(cores) > len(available):
        print(f"error: --cores must be between 1 and {len(available)}, the cores this process may use", file=sys.stderr)
        return 2
    from starjax.config import load_config

    demo_dtype = load_config(str(ROOT / "configs" / "demo.yaml"), []).model.compute_dtype
    dtypes = args.dtype or [demo_dtype]
    if not set(dtypes) <= set(DTYPES):
        print(f"error: --dtype takes {', '.join(DTYPES)}, not {', '.join(sorted(set(dtypes) - set(DTYPES)))}", file=sys.stderr)
        return 2
    if args.run is not None:
        from starjax.run_dir import RunDir

        run_dir = RunDir.at(args.run)
        if not (run_dir.tokenizer.is_file() and run_dir.samples(1).is_file()):
            print(
                f"error: --run {args.run} has no tokenizer.model and samples/iter_1.jsonl: give a STaR run directory",
                file=sys.stderr,
            )
            return 2
    # the floor and the fine-tunes' comparison use the settings with the most cores, in the demo's dtype
    most = max(cores)
    cases = [("train", n, d, c, dt) for n in args.seq_len for d in args.devices for c in cores for dt in dtypes]
    cases += [("generate", 128, d, c, dt) for d in args.devices for c in cores for dt in dtypes]
    print(
        "| what | row length | devices | cores | compute dtype | median ms | min-max ms | GFLOP/s |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    one_device_flops: dict[int, float] = {}
    one_device_seconds: dict[int, float] = {}
    per_token = None
    for kind, n, d, c, dtype in cases:
        repeats = args.repeats if kind == "train" else max(3, args.repeats // 4)
        out = subprocess.run(
            [sys.executable, __file__, "--one", kind, str(n), str(d), str(c), dtype, "--repeats", str(repeats)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        got = json.loads(out.strip().splitlines()[-1])
        ms = [1e3 * t for t in got["seconds"]]
        median = statistics.median(ms) / 1e3
        demo_setting = d == 1 and c == most and dtype == demo_dtype
        if kind == "train" and demo_setting:
            one_device_flops[n], one_device_seconds[n] = got["flops"], median
        elif kind == "generate" and demo_setting:
            per_token = got["per_token"]
        what = "train step, 32 rows" if kind == "train" else "generate: 128 rows x 128 new tokens"
        print(
            f"| {what} | {n if kind == 'train' else '-'} | {d} | {c} | {dtype} | {1e3 * median:.1f} | {min(ms):.1f}-{max(ms):.1f} | {got['flops'] / median / 1e9:.1f} |",
            flush=True,
        )
    from machine import matmul_peak_gflops

    peak = 1e9 * matmul_peak_gflops()
    print(f"\nfloat32 matmul peak (benchmarks/machine.py): {peak / 1e9:.1f} GFLOP/s")
    print(_floor(peak, one_device_flops, one_device_seconds, per_token, args.run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
