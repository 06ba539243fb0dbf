"""Shared presets, CLI, inputs and timing for the peer benchmarks.

Imported by tunix_sampler.py, hf_generate.py and hf_train.py, which run inside
their own
virtual environments (benchmarks/.envs/<name>), so this module may depend on
numpy and the standard library only.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from importlib import metadata
from typing import Callable

# Both peers (and starjax) must build exactly these shapes; float32, seed 0.
PRESETS = {
    "tiny": dict(
        layers=4,
        d_model=256,
        heads=4,
        kv_heads=2,
        head_dim=64,
        mlp=1024,
        vocab=64,
        rope_theta=10000.0,
        norm_eps=1e-6,
        prompt_len=32,
        new_tokens=64,
    ),
    "small": dict(
        layers=12,
        d_model=768,
        heads=12,
        kv_heads=4,
        head_dim=64,
        mlp=3072,
        vocab=32000,
        rope_theta=10000.0,
        norm_eps=1e-6,
        prompt_len=64,
        new_tokens=32,
    ),
}
FIRST_PROMPT_ID = 4  # ids 0..3 are left free for pad/bos/eos-like roles
PROMPT_SEED = 1234  # same prompts for every engine at a given preset/batch
PARAM_SEED = 0
# Training benchmark: model shapes as in PRESETS, plus these batch shapes.
TRAIN_SHAPES = {"tiny": dict(batch=32, seq_len=128), "small": dict(batch=8, seq_len=256)}
TRAIN_DATA_SEED = 4321
IGNORE_LABEL = -100  # PyTorch/HF cross-entropy ignore_index


class _OneLineErrors(argparse.ArgumentParser):
    """Usage errors as one stderr line (the driver logs stderr verbatim)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}\n")


def make_parser(description: str) -> argparse.ArgumentParser:
    p = _OneLineErrors(description=description)
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    return p


def parse_args(description: str) -> argparse.Namespace:
    p = make_parser(description)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if args.batch < 1 or args.repeats < 1:
        p.error("--batch and --repeats must be >= 1")
    return args


def make_prompts(cfg: dict, batch: int):
    """B rows of exactly prompt_len random ids in [4, vocab); no padding."""
    import numpy as np

    rng = np.random.default_rng(PROMPT_SEED)
    return rng.integers(FIRST_PROMPT_ID, cfg["vocab"], size=(batch, cfg["prompt_len"]), dtype=np.int64)


def make_train_batch(preset: str, step: int):
    """(input_ids, labels) for training step `step`: random ids in [0, vocab).

    The first half of every row is a prompt without loss (labels ignored), as
    in completion-only SFT. Seeded per step: every engine sees the same data.
    """
    import numpy as np

    shape = TRAIN_SHAPES[preset]
    rng = np.random.default_rng((TRAIN_DATA_SEED, step))
    ids = rng.integers(0, PRESETS[preset]["vocab"], size=(shape["batch"], shape["seq_len"]), dtype=np.int64)
    labels = ids.copy()
    labels[:, : shape["seq_len"] // 2] = IGNORE_LABEL
    return ids, labels


def time_calls(fn: Callable[[int], None], warmup: int, repeats: int):
    """`warmup` calls timed together (compile / warm-up), then `repeats` timed
    one by one. `fn(i)` gets the call's index, 0 .. warmup+repeats-1, and must
    only return once its result is materialised."""
    t0 = time.perf_counter()
    for i in range(warmup):
        fn(i)
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(warmup, warmup + repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return compile_s, times


def time_generate(generate: Callable[[int, int], None], new_tokens: int, repeats: int):
    """`generate(seed, n)` runs prefill + decode of `n` new tokens and only returns once the
    result is materialised. Returns (compile_s, times, prefill_times).

    Warm-up first (one full call and one single-token call, timed together as compile_s: an
    engine may compile each), then `repeats` rounds that alternate a full call with a
    single-token call (prefill and the first token only), so both see the same machine state.
    Each call gets its own sampling seed.
    """
    t0 = time.perf_counter()
    generate(0, new_tokens)
    generate(0, 1)
    compile_s = time.perf_counter() - t0
    times, prefill_times = [], []
    for seed in range(1, repeats + 1):
        for n, out in ((new_tokens, times), (1, prefill_times)):
            t0 = time.perf_counter()
            generate(seed, n)
            out.append(time.perf_counter() - t0)
    return compile_s, times, prefill_times


def generate_row(
    engine: str, preset: str, batch: int, new_tokens: int, compile_s: float, times: list, prefill_times: list
) -> dict:
    """Whole-call tokens/s, plus the split: prefill_s (a single-token call) and decode tokens/s
    over the remaining new_tokens - 1 steps (difference of the medians)."""
    full, prefill = statistics.median(times), statistics.median(prefill_times)
    decode = batch * (new_tokens - 1) / (full - prefill) if full > prefill else None
    return {
        "engine": engine,
        "preset": preset,
        "batch": batch,
        **rounded_times(compile_s, times, batch * new_tokens),
        "prefill_times_s": [round(t, 4) for t in prefill_times],
        "prefill_s": round(prefill, 4),
        "decode_tokens_per_s": decode and round(decode, 2),
    }


def versions(*dists: str) -> str:
    return ", ".join(f"{d} {metadata.version(d)}" for d in dists)


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2)


def emit(result: dict) -> None:
    """The last stdout line is the JSON result the driver parses."""
    print(json.dumps({**result, "peak_rss_gb": peak_rss_gb()}), flush=True)


def rounded_times(compile_s: float, times: list, tokens: int) -> dict:
    return {
        "compile_s": round(compile_s, 4),
        "times_s": [round(t, 4) for t in times],
        "tokens_per_s": round(tokens / statistics.median(times), 2),
    }


def report(engine: str, args, cfg: dict, timing: tuple, version: str, note: str) -> None:
    """`timing` is time_generate's result."""
    emit(
        {
            **generate_row(engine, args.preset, args.batch, cfg["new_tokens"], *timing),
            "new_tokens": cfg["new_tokens"],
            "prompt_len": cfg["prompt_len"],
            "version": version,
            "note": note,
        }
    )


def run_main(main: Callable[[], None]) -> None:
    """Errors become one stderr line and a non-zero exit, no traceback."""
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        msg = " ".join(f"{type(e).__name__}: {e}".split())
        print(f"error: {msg[:500]}", file=sys.stderr)
        sys.exit(1)
