"""Train-step compile time against depth, layers as a Python loop or as one lax.scan
(`model.scan_layers`), and what the scan costs per step once compiled. A 128-wide model (4 heads,
MLP 512, vocab 1,024), 8 rows of 128 tokens, full remat, one CPU device; each setting in a fresh
process, so no compile is reused.

    .venv/bin/python benchmarks/compile_depth.py --layers 2 8 32 [--json] [--no-write]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def _measure(layers: int, scan: bool, steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from starjax.config import load_config
    from starjax.model.transformer import create_model
    from starjax.runtime import start
    from starjax.training.step import Batch, compile_train_step, init_state

    cfg = load_config(
        None,
        [
            "model.d_model=128",
            "model.num_heads=4",
            "model.num_kv_heads=4",
            "model.mlp_dim=512",
            "model.vocab_size=1024",
            f"model.num_layers={layers}",
            f"model.scan_layers={str(scan).lower()}",
            "train.batch_size=8",
            "train.seq_len=128",
            "train.remat=full",
        ],
    )
    rules = start(cfg)
    model = create_model(cfg.model, rules, 0)
    state = init_state(model, cfg.train, 0)
    step = compile_train_step(nnx.graphdef(model), cfg.train, rules, state)
    shape = (cfg.train.batch_size, cfg.train.seq_len)
    began = time.perf_counter()
    lowered = step.lower(state, Batch(*(jax.ShapeDtypeStruct(shape, jnp.int32),) * 4, jax.ShapeDtypeStruct(shape, jnp.float32)))
    lowered.compile()
    compile_s = time.perf_counter() - began
    tokens = jnp.ones(shape, jnp.int32)
    batch = Batch(tokens, tokens, tokens, tokens, jnp.ones(shape, jnp.float32))
    times = []
    for _ in range(steps + 1):
        began = time.perf_counter()
        state, metrics = step(state, batch)  # the first call compiles again (untimed)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - began)
    return {"layers": layers, "scan": scan, "compile_s": compile_s, "step_ms": 1000 * statistics.median(times[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--steps", type=int, default=5, help="timed steps after compiling (median)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite benchmarks/RESULTS.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # LAYERS,SCAN: measure in this process
    args = parser.parse_args()
    if args.one:
        layers, scan = args.one.split(",")
        print(json.dumps(_measure(int(layers), scan == "1", args.steps)))
        return
    rows = []
    for layers in args.layers:
        for scan in (False, True):
            out = subprocess.run(
                [sys.executable, __file__, "--one", f"{layers},{int(scan)}", "--steps", str(args.steps)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
                env={**os.environ, "JAX_PLATFORMS": "cpu"},
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr, flush=True)
    from machine import describe_machine, matmul_peak_gflops
    from results import publish

    by = {(r["layers"], r["scan"]): r for r in rows}
    lines = ["| layers | compile s, loop | compile s, scan | step ms, loop | step ms, scan |", "|---|---|---|---|---|"]
    for n in args.layers:
        loop, scan = by[(n, False)], by[(n, True)]
        lines.append(
            f"| {n} | {loop['compile_s']:.1f} | {scan['compile_s']:.1f} | {loop['step_ms']:.1f} | {scan['step_ms']:.1f} |"
        )
    body = (
        f"{describe_machine(matmul_peak_gflops())}. `lower().compile()` of the train step, one fresh process per setting; step: median of "
        f"{args.steps} after compiling.\n\n" + "\n".join(lines)
    )
    publish(
        "compile_depth", "Compile time against depth (`python benchmarks/compile_depth.py`)", body, rows, tuple(rows[0]), args
    )


if __name__ == "__main__":
    main()
