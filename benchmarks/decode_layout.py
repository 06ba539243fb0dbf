"""Decode layout (`sampler.fuse_weights`) against the stored weights, interleaved in one process.

The two compiled `generate` programs run alternately on the same random-init model, prompts
and settings (temperature 1.0, EOS disabled), so machine noise hits both alike; medians and
their ratio are printed (not a test, and not written to RESULTS.md).

    .venv/bin/python benchmarks/decode_layout.py --preset tiny --batch 32
    .venv/bin/python benchmarks/decode_layout.py --config configs/demo.yaml --batch 128 --new 128
    .venv/bin/python benchmarks/decode_layout.py --preset tiny --batch 32 --out-major-min-size 0
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampler import timed_generate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--preset", choices=["tiny", "small"])
    model.add_argument("--config", help="a starjax config whose model to use (e.g. configs/demo.yaml)")
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=11, help="timed calls per layout (after one warm-up)")
    parser.add_argument(
        "--out-major-min-size",
        type=int,
        default=None,
        metavar="N",
        help="transpose decode weights of at least N elements (0: all of them; default: starjax.model.layers.OUT_MAJOR_MIN_SIZE)",
    )
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be >= 3 (medians)")
    if args.out_major_min_size is not None:
        from starjax.model import layers

        if args.out_major_min_size < 0:
            parser.error("--out-major-min-size must be >= 0")
        layers.OUT_MAJOR_MIN_SIZE = args.out_major_min_size

    from flax import nnx

    from starjax.config import load_config
    from starjax.errors import ConfigError
    from starjax.model.transformer import create_model
    from starjax.runtime import start

    overrides = [
        f"model.vocab_size={args.vocab}",
        f"sampler.max_new_tokens={args.new}",
        "sampler.temperature=1.0",
        "mesh.data=1",
    ] + ([f"model.preset={args.preset}"] if args.preset else [])
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"decode_layout: error: {e}", file=sys.stderr)
        return 2
    rules = start(cfg)
    graphdef, params = nnx.split(create_model(cfg.model, rules, seed=0))
    calls = {
        fuse: timed_generate(
            dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, fuse_weights=fuse)),
            rules,
            graphdef,
            params,
            args.batch,
            args.prompt,
            args.new,
        )
        for fuse in (True, False)
    }
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.rounds + 1):
        for fuse, call in calls.items():
            seconds = call(i)
            if i:  # the first call compiles
                times[fuse].append(seconds)
    tokens = args.batch * args.new
    fused, stored = (float(np.median(times[f])) for f in (True, False))
    print(
        f"fused {tokens / fused:,.0f} tokens/s, stored {tokens / stored:,.0f} tokens/s, "
        f"fused / stored {stored / fused:.2f}x (medians of {args.rounds})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
