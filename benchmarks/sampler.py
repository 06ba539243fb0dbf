"""Decode throughput: starjax vs google-tunix's Sampler vs Hugging Face transformers' generate.

Same shapes and settings for every engine: random-init float32 Llama-family models (`tiny` with
vocab 64, prompt 32, 64 new tokens; `small` with vocab 32000, prompt 64, 32 new tokens),
temperature 1.0, no top-k/top-p, EOS disabled so every row generates exactly the new-token
count. tokens/s = batch x new tokens / median wall time of a whole generate call (prefill +
decode); the first calls (compilation, warm-up) are reported apart. Every engine alternates
whole calls with single-token calls (prefill and the first token): "prefill s" is the median of
those, "decode tokens/s" = batch x (new tokens - 1) / (whole - prefill), the steady decode rate
without the prompt pass. Peers run in their own virtual environments (benchmarks/peer_envs.py
creates them on first use); all three time calls with benchmarks/peers/common.py.

    .venv/bin/python benchmarks/sampler.py                 # everything, writes benchmarks/RESULTS.md
    .venv/bin/python benchmarks/sampler.py --engines starjax --batches 32 --no-write
    .venv/bin/python benchmarks/sampler.py --engines starjax --no-write --set sampler.fuse_weights=false
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "peers"))

from common import generate_row, time_generate  # noqa: E402  (peers/common.py: one timing protocol for all)
from machine import describe_machine, matmul_peak_gflops  # noqa: E402
from results import publish  # noqa: E402

SHAPES = {  # preset: (vocab, prompt length, new tokens)
    "tiny": (64, 32, 64),
    "small": (32000, 64, 32),
}
PEER_SCRIPTS = {"tunix": "peers/tunix_sampler.py", "transformers": "peers/hf_generate.py"}


def timed_generate(cfg, rules, graphdef, params, batch: int, prompt_len: int, new: int):
    """`call(seed, n=new) -> seconds`: one compiled generate call (layout from
    `cfg.sampler.fuse_weights`) on fixed random prompts, temperature 1.0, EOS disabled so every
    row generates `n` tokens. `n` is traced (max_new_tokens): every n <= new runs one program."""
    import dataclasses

    import jax

    from starjax.model.kv_cache import KVCache
    from starjax.sampling.loop import compile_generate
    from starjax.sampling.strategies import SamplingSettings

    fn = compile_generate(
        graphdef,
        params,
        rules,
        cfg.model.num_layers,
        max_new_cap=new,
        num_samples=1,
        top_k=0,
        pad_id=0,
        on_compile=lambda: None,
        fuse_weights=cfg.sampler.fuse_weights,
    )
    settings = SamplingSettings.create(cfg.sampler, eos_id=-1)  # -1 never occurs: EOS disabled
    prompts = np.random.RandomState(0).randint(4, cfg.model.vocab_size, (batch, prompt_len)).astype(np.int32)
    lengths = np.full((batch,), prompt_len, np.int32)
    limits = np.full((batch, 1), new, np.int32)
    cache = KVCache.init(cfg.model, rules, batch, prompt_len + new)

    def call(seed: int, n: int = new) -> float:
        nonlocal cache
        start = time.perf_counter()
        out, cache = fn(
            params,
            cache,
            prompts,
            lengths,
            limits,
            jax.random.key(seed),
            dataclasses.replace(settings, max_new_tokens=np.int32(n)),
        )
        jax.block_until_ready(out)
        assert int(out.lengths.min()) == int(out.lengths.max()) == n, "every row must generate exactly n tokens"
        return time.perf_counter() - start

    return call


def run_starjax(preset: str, batch: int, repeats: int, devices: int, overrides: list[str]) -> dict:
    """Runs in a fresh process (see `starjax_row`): the CPU device count is fixed at JAX start-up."""
    import jax

    if devices > 1:
        jax.config.update("jax_num_cpu_devices", devices)
    from flax import nnx

    from starjax.config import load_config
    from starjax.model.transformer import count_params, create_model
    from starjax.runtime import start

    vocab, prompt_len, new = SHAPES[preset]
    cfg = load_config(
        None,
        [
            f"model.preset={preset}",
            f"model.vocab_size={vocab}",
            f"sampler.max_new_tokens={new}",
            "sampler.temperature=1.0",
            f"mesh.data={devices}",
            *overrides,
        ],
    )
    rules = start(cfg)
    model = create_model(cfg.model, rules, seed=0)
    graphdef, params = nnx.split(model)
    call = timed_generate(cfg, rules, graphdef, params, batch, prompt_len, new)
    timing = time_generate(call, new, repeats)
    engine = "starjax" if devices == 1 else f"starjax-dp{devices}"
    return {**generate_row(engine, preset, batch, new, *timing), "params": count_params(model)}


def starjax_row(preset: str, batch: int, repeats: int, devices: int, overrides: list[str]) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--presets",
        preset,
        "--batches",
        str(batch),
        "--repeats",
        str(repeats),
        "--cpu-devices",
        str(devices),
    ] + [f"--set={o}" for o in overrides]
    return _row_from(subprocess.run(cmd, capture_output=True, text=True), "starjax", preset, batch)


def _row_from(proc: subprocess.CompletedProcess, engine: str, preset: str, batch: int) -> dict:
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(engine=engine, preset=preset, batch=batch, error=tail)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_peer(engine: str, preset: str, batch: int, repeats: int) -> dict:
    from peer_envs import ensure_env

    python = ensure_env(engine)
    cmd = [str(python), str(HERE / PEER_SCRIPTS[engine]), "--preset", preset, "--batch", str(batch), "--repeats", str(repeats)]
    return _row_from(subprocess.run(cmd, capture_output=True, text=True), engine, preset, batch)


def matmul_flops_per_call(preset: str, batch: int, params: int) -> float:
    """2 x weights x tokens processed (prompt once, each new token once); attention ignored."""
    vocab, prompt_len, new = SHAPES[preset]
    return 2.0 * params * batch * (prompt_len + new)


def format_table(rows: list[dict], params: dict, peak: float) -> str:
    """One line per run; each peer line carries the ratio of every starjax variant to it, for the
    whole call and for the decode steps alone."""
    table = [
        "| preset | batch | engine | tokens/s (median) | prefill s | decode tokens/s | compile s | "
        "% of matmul peak | starjax / this: whole call (decode only) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            table.append(f"| {row['preset']} | {row['batch']} | {row['engine']} | failed: {row['error']} | | | | | |")
            continue
        tps, decode = row["tokens_per_s"], row.get("decode_tokens_per_s")
        pct = ""
        if params.get(row["preset"]):
            seconds = row["batch"] * SHAPES[row["preset"]][2] / tps
            pct = f"{100 * matmul_flops_per_call(row['preset'], row['batch'], params[row['preset']]) / seconds / 1e9 / peak:.0f}%"
        ratios = []
        if not row["engine"].startswith("starjax"):
            for ours in rows:
                same = ours["preset"] == row["preset"] and ours["batch"] == row["batch"]
                if same and ours["engine"].startswith("starjax") and "tokens_per_s" in ours:
                    split = (
                        f" ({ours['decode_tokens_per_s'] / decode:.2f}x)" if decode and ours.get("decode_tokens_per_s") else ""
                    )
                    ratios.append(f"{ours['engine']} {ours['tokens_per_s'] / tps:.2f}x{split}")
        table.append(
            f"| {row['preset']} | {row['batch']} | {row['engine']} | {tps:,.0f} | {row['prefill_s']:.3f} | "
            f"{f'{decode:,.0f}' if decode else 'n/a'} | {row.get('compile_s', 0):.1f} | {pct} | "
            f"{', '.join(ratios)} |"
        )
    return "\n".join(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--batches", default="8,32,128")
    parser.add_argument("--engines", default="starjax,tunix,transformers")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on the last line")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=os.cpu_count() or 1,
        help="also run starjax data-parallel over this many CPU devices (default: one per core)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a starjax config override for the starjax rows (repeatable)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_starjax(args.presets, int(args.batches), args.repeats, args.cpu_devices, args.set)))
        return 0
    presets = args.presets.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    engines = args.engines.split(",")
    unknown = [p for p in presets if p not in SHAPES] + [e for e in engines if e != "starjax" and e not in PEER_SCRIPTS]
    if unknown or args.repeats < 3:
        parser.error(f"unknown preset/engine {unknown}" if unknown else "--repeats must be >= 3 (medians)")

    peak = matmul_peak_gflops()
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s", file=sys.stderr)
    import jax

    # Data-parallel over CPU cores only makes sense on a CPU backend.
    variants = [1] + ([args.cpu_devices] if args.cpu_devices > 1 and jax.default_backend() == "cpu" else [])
    rows, params = [], {}
    for preset in presets:
        for batch in batches:
            for engine in engines:
                for devices in variants if engine == "starjax" else [None]:
                    print(f"{engine} {preset} batch {batch} ...", file=sys.stderr, flush=True)
                    if engine == "starjax":
                        row = starjax_row(preset, batch, args.repeats, devices, args.set)
                    else:
                        row = run_peer(engine, preset, batch, args.repeats)
                    if row.get("params"):
                        params.setdefault(preset, row["params"])
                    rows.append(row)
                    print(f"  -> {row['engine']}: {row.get('tokens_per_s', row.get('error'))}", file=sys.stderr, flush=True)

    body = describe_machine(peak) + "\n\n" + format_table(rows, params, peak)
    title = f"Decode throughput (`{' '.join(['python benchmarks/sampler.py'] + sys.argv[1:])}`)"
    publish("sampler", title, body, rows, ("engine", "preset", "batch", "tokens_per_s"), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
