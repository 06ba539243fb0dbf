"""Peer benchmark: google-tunix `Sampler` replaying a generation workload (star_generate.py).

Run with the tunix venv's python (see benchmarks/peer_envs.py):
  benchmarks/.envs/tunix/bin/python benchmarks/peers/tunix_workload.py --spec SPEC.json

SPEC holds the model shape (common.PRESETS' keys), the prompt bucket, the repeats and the
batches: each a list of prompts (token ids, one per row) and the new tokens its longest row
generated in starjax. Random weights cannot be made to stop where a trained model does, so each
batch runs that many steps, as a stop id ending every row would make tunix's loop end; the
step count is rounded up to a multiple of STEP_ROUNDING so that a few programs serve every
batch (tunix compiles one per length). One untimed pass compiles them all; then `repeats`
timed passes. The last stdout line is the JSON result.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common
from tunix_sampler import IdTokenizer, build_model

STEP_ROUNDING = 16


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] != "--spec":
        print("usage: tunix_workload.py --spec SPEC.json", file=sys.stderr)
        sys.exit(2)
    spec = json.loads(open(sys.argv[2]).read())
    warnings.filterwarnings("ignore")
    import jax
    from tunix.generate import sampler as sampler_lib

    cfg, prompt_len = spec["model"], spec["prompt_len"]
    model, mcfg = build_model(cfg)
    steps = [-(-b["steps"] // STEP_ROUNDING) * STEP_ROUNDING for b in spec["batches"]]
    sampler = sampler_lib.Sampler(
        model,
        IdTokenizer(cfg["vocab"]),
        sampler_lib.CacheConfig(
            cache_size=prompt_len + max(steps), num_layers=mcfg.num_layers, num_kv_heads=mcfg.num_kv_heads, head_dim=mcfg.head_dim
        ),
    )
    texts = [[" ".join(map(str, p)) for p in b["prompts"]] for b in spec["batches"]]

    def one_pass(seed: int) -> float:
        start = time.perf_counter()
        for batch, n in zip(texts, steps):
            out = sampler(
                batch,
                max_generation_steps=n,
                max_prompt_length=prompt_len,
                echo=False,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                seed=seed,
            )
            jax.block_until_ready(out.tokens)
        return time.perf_counter() - start

    compile_s = one_pass(0)
    times = [one_pass(seed) for seed in range(1, spec["repeats"] + 1)]
    common.emit(
        {
            "engine": "tunix",
            "compile_s": round(compile_s, 3),
            "times_s": [round(t, 3) for t in times],
            "wall_s": round(statistics.median(times), 3),
            "version": common.versions("google-tunix", "jax", "jaxlib", "flax"),
        }
    )


if __name__ == "__main__":
    common.run_main(main)
