"""Fused against stored decode layout (`sampler.fuse_weights`), interleaved in one process.

The two compiled `generate` programs run alternately on the same random-init model, prompts
and settings (temperature 1.0, EOS disabled), so machine noise hits both alike; medians and
their ratio are printed (not a test, and not written to RESULTS.md).

    .venv/bin/python benchmarks/decode_layout.py --preset tiny --batch 32
    .venv/bin/python benchmarks/decode_layout.py --config configs/demo.yaml --batch 128 --new 128
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


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
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be >= 3 (medians)")

    import jax
    from flax import nnx

    from starjax.config import ConfigError, load_config
    from starjax.model.kv_cache import KVCache
    from starjax.model.transformer import create_model
    from starjax.runtime import start
    from starjax.sampling.loop import compile_generate
    from starjax.sampling.strategies import SamplingSettings

    overrides = [f"model.vocab_size={args.vocab}", f"sampler.max_new_tokens={args.new}", "sampler.temperature=1.0",
                 "mesh.data=1"] + ([f"model.preset={args.preset}"] if args.preset else [])
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"decode_layout: error: {e}", file=sys.stderr)
        return 2
    rules = start(cfg)
    graphdef, params = nnx.split(create_model(cfg.model, rules, seed=0))
    programs = {fuse: compile_generate(graphdef, params, rules, cfg.model.num_layers, max_new_cap=args.new,
                                       num_samples=1, top_k=0, pad_id=0, on_compile=lambda: None, fuse_weights=fuse)
                for fuse in (True, False)}
    settings = SamplingSettings.create(cfg.sampler, eos_id=-1)  # -1 never occurs: every row runs to --new
    prompts = np.random.RandomState(0).randint(4, args.vocab, (args.batch, args.prompt)).astype(np.int32)
    lengths = np.full((args.batch,), args.prompt, np.int32)
    caches = {fuse: KVCache.init(cfg.model, rules, args.batch, args.prompt + args.new) for fuse in programs}
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.rounds + 1):
        for fuse, fn in programs.items():
            began = time.perf_counter()
            out, caches[fuse] = fn(params, caches[fuse], prompts, lengths, jax.random.key(i), settings)
            jax.block_until_ready(out)
            if i:  # the first call compiles
                times[fuse].append(time.perf_counter() - began)
    tokens = args.batch * args.new
    fused, stored = (float(np.median(times[f])) for f in (True, False))
    print(f"fused {tokens / fused:,.0f} tokens/s, stored {tokens / stored:,.0f} tokens/s, "
          f"fused / stored {stored / fused:.2f}x (medians of {args.rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
