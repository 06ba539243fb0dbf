"""The demo's own compute, timed piece by piece: its compiled train step (configs/demo.yaml's
model, 32 rows) at several row lengths, and its sampler decoding 128 new tokens for 128 rows
(random init: no row stops early), on one CPU device or split over several. Each setting runs in
a fresh process (the device count is fixed when JAX starts). Not a peer comparison: it says
where `make demo`'s minutes go and what a config choice saves.

    .venv/bin/python benchmarks/demo_step.py --seq-len 128 112 104 --devices 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _measure(kind: str, seq_len: int, devices: int, repeats: int) -> list[float]:
    """Seconds per train step, or per sampler call, `repeats` times after compiling (in this process)."""
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
            "sampler.progress=false",
        ],
    )
    rules = start(cfg)
    model = create_model(cfg.model, rules, seed=0)
    rng = np.random.default_rng(0)
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

    for i in range(2):
        run(i)
    out = []
    for i in range(repeats):
        began = time.perf_counter()
        run(i)
        out.append(time.perf_counter() - began)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq-len", type=int, nargs="+", default=[128, 104], help="train row lengths")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="CPU device counts")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--one", nargs=3, metavar=("KIND", "SEQ_LEN", "DEVICES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, seq_len, devices = args.one
        print(json.dumps(_measure(kind, int(seq_len), int(devices), args.repeats)))
        return 0
    cases = [("train", n, d) for n in args.seq_len for d in args.devices] + [("generate", 128, d) for d in args.devices]
    print("| what | row length | devices | median ms | min-max ms |\n|---|---|---|---|---|")
    for kind, n, d in cases:
        repeats = args.repeats if kind == "train" else max(3, args.repeats // 4)
        out = subprocess.run(
            [sys.executable, __file__, "--one", kind, str(n), str(d), "--repeats", str(repeats)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        ms = [1e3 * t for t in json.loads(out.strip().splitlines()[-1])]
        what = "train step, 32 rows" if kind == "train" else "generate: 128 rows x 128 new tokens"
        print(
            f"| {what} | {n if kind == 'train' else '-'} | {d} | {statistics.median(ms):.1f} | {min(ms):.1f}-{max(ms):.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
