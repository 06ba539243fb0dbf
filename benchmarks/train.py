"""Training throughput: starjax's train step vs Hugging Face transformers + PyTorch AdamW.

Identical work per step: a random-init float32 Llama-family model (`tiny`: vocab 64, batch
32 x 128 tokens; `small`: vocab 32000, batch 8 x 256), the same token batches
(benchmarks/peers/common.py), loss on the second half of each row only, AdamW (lr 3e-4,
weight decay 0.1, betas 0.9/0.95), global-norm clipping at 1.0. tokens/s counts every input
token; MFU = 6 x parameters x tokens/s / the measured float32 matmul peak. The first steps
(compilation / warm-up) are timed apart.

    .venv/bin/python benchmarks/train.py                 # both presets, writes benchmarks/RESULTS.md
    .venv/bin/python benchmarks/train.py --presets tiny --no-write --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "peers"))

from common import PRESETS, TRAIN_SHAPES, make_train_batch, peak_rss_gb  # noqa: E402
from machine import describe_machine, matmul_peak_gflops  # noqa: E402
from results import publish  # noqa: E402


def build_starjax(preset: str, n_batches: int, host_malloc: str = "auto"):
    """starjax's compiled train step, its state and `n_batches` device batches for `preset`."""
    from flax import nnx

    from starjax.config import load_config
    from starjax.model.transformer import count_params, create_model
    from starjax.runtime import start
    from starjax.training.data import device_batch
    from starjax.training.step import compile_train_step, init_state

    shape = TRAIN_SHAPES[preset]
    b, length = shape["batch"], shape["seq_len"]
    cfg = load_config(
        None,
        [
            f"model.preset={preset}",
            f"model.vocab_size={PRESETS[preset]['vocab']}",
            f"train.batch_size={b}",
            f"train.seq_len={length}",
            "train.learning_rate=3e-4",
            "train.warmup_steps=0",
            "mesh.data=1",
            f"runtime.host_malloc={host_malloc}",
        ],
    )
    rules = start(cfg)
    model = create_model(cfg.model, rules, seed=0)
    graphdef, _ = nnx.split(model)
    state = init_state(model, cfg.train, seed=0)
    step_fn = compile_train_step(graphdef, cfg.train, rules, state)

    def batch(i: int) -> dict:
        ids, _ = make_train_batch(preset, i)
        ids = ids.astype(np.int32)
        weights = np.zeros((b, length), np.float32)
        weights[:, length // 2 - 1 : length - 1] = 1.0  # targets ids[j + 1] with j + 1 >= length / 2
        return dict(
            tokens=ids,
            targets=np.concatenate([ids[:, 1:], ids[:, :1]], axis=1),
            positions=np.broadcast_to(np.arange(length, dtype=np.int32), (b, length)).copy(),
            segment_ids=np.ones((b, length), np.int32),
            weights=weights,
        )

    return step_fn, state, [device_batch(batch(i), rules) for i in range(n_batches)], count_params(model)


def run_starjax(preset: str, steps: int, warmup: int, host_malloc: str) -> dict:
    step_fn, state, batches, params = build_starjax(preset, warmup + steps, host_malloc)
    shape = TRAIN_SHAPES[preset]
    losses = []

    def run(i: int) -> float:
        nonlocal state
        start = time.perf_counter()
        state, metrics = step_fn(state, batches[i])
        losses.append(float(metrics["loss"]))  # blocks until the step is done
        return time.perf_counter() - start

    compile_s = sum(run(i) for i in range(warmup))
    times = [run(i) for i in range(warmup, warmup + steps)]
    return dict(
        engine="starjax",
        preset=preset,
        batch=shape["batch"],
        seq_len=shape["seq_len"],
        compile_s=compile_s,
        times_s=times,
        tokens_per_s=shape["batch"] * shape["seq_len"] / float(np.median(times)),
        params=params,
        loss_first=losses[0],
        loss_last=losses[-1],
        peak_rss_gb=peak_rss_gb(),
    )


def subprocess_row(cmd: list[str], engine: str, preset: str) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return dict(engine=engine, preset=preset, error=(proc.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--engines", default="starjax,transformers")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per engine (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on the last line")
    parser.add_argument(
        "--host-malloc", default="auto", choices=("auto", "reuse", "system"), help="starjax's runtime.host_malloc"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_starjax(args.presets, args.steps, args.warmup, args.host_malloc)))
        return 0
    presets, engines = args.presets.split(","), args.engines.split(",")
    bad = [p for p in presets if p not in TRAIN_SHAPES] + [e for e in engines if e not in ("starjax", "transformers")]
    if bad or args.steps < 3:
        parser.error(f"unknown preset/engine {bad}" if bad else "--steps must be >= 3 (medians)")

    peak = matmul_peak_gflops()
    rows = []
    for preset in presets:
        for engine in engines:
            print(f"{engine} {preset} ...", file=sys.stderr, flush=True)
            common = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
            if engine == "starjax":  # its own process: a clean JAX, like the peer
                cmd = [sys.executable, __file__, "--worker", "--presets", preset, "--host-malloc", args.host_malloc, *common]
            else:
                from peer_envs import ensure_env

                cmd = [str(ensure_env("transformers")), str(HERE / "peers" / "hf_train.py"), "--preset", preset, *common]
            rows.append(subprocess_row(cmd, engine, preset))
            print(f"  -> {rows[-1].get('tokens_per_s', rows[-1].get('error'))}", file=sys.stderr, flush=True)

    table = [
        "| preset | engine | tokens/s (median) | compile s | MFU | peak RSS GB | starjax / this |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            table.append(f"| {row['preset']} | {row['engine']} | failed: {row['error']} | | | | |")
            continue
        row["mfu"] = 6 * row["params"] * row["tokens_per_s"] / (peak * 1e9)
        ours = next((r for r in rows if r["engine"] == "starjax" and r["preset"] == row["preset"] and "tokens_per_s" in r), None)
        ratio = f"{ours['tokens_per_s'] / row['tokens_per_s']:.2f}x" if ours and row["engine"] != "starjax" else ""
        table.append(
            f"| {row['preset']} | {row['engine']} | {row['tokens_per_s']:,.0f} | {row['compile_s']:.1f} | "
            f"{100 * row['mfu']:.0f}% | {row['peak_rss_gb']:.1f} | {ratio} |"
        )
    title = f"Training throughput (`{' '.join(['python benchmarks/train.py'] + sys.argv[1:])}`)"
    body = describe_machine(peak) + "\n\n" + "\n".join(table)
    publish("train", title, body, rows, ("engine", "preset", "tokens_per_s", "mfu"), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
