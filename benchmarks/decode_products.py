"""How fast this machine runs the matrix products of one decode step, in isolation.

For each weight shape of a `benchmarks/sampler.py` preset's decode step (fused q/k/v, o,
fused gate/up, down, output projection), B rows times the weight, chained through one
`lax.fori_loop` over a copy per layer so the weights stream from memory as they do in
decoding. Two orientations: `x @ w` (activations [B, in], weights [in, out], starjax's layout)
and `w @ x` (activations [in, B], weights [out, in]). Prints GFLOP/s beside the square float32
matmul peak: the ceiling a decode step's products can reach here (not a test, not written to
RESULTS.md).

    .venv/bin/python benchmarks/decode_products.py --preset small --batch 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from common import PRESETS
from machine import matmul_peak_gflops


def product_shapes(preset: str) -> dict[str, tuple[int, int]]:
    """(in, out) of each decode-step product, q/k/v and gate/up fused as `sampler.fuse_weights` does."""
    c = PRESETS[preset]
    qkv = (c["heads"] + 2 * c["kv_heads"]) * c["head_dim"]
    return {
        "qkv": (c["d_model"], qkv),
        "o": (c["heads"] * c["head_dim"], c["d_model"]),
        "gate_up": (c["d_model"], 2 * c["mlp"]),
        "down": (c["mlp"], c["d_model"]),
        "logits": (c["d_model"], c["vocab"]),
    }


def gflops(rows: int, fan_in: int, fan_out: int, layers: int, weights_first: bool, rounds: int = 7) -> float:
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    shape = (fan_out, fan_in) if weights_first else (fan_in, fan_out)
    ws = [jnp.asarray(rng.standard_normal(shape, np.float32) * 0.01) for _ in range(layers)]
    x = jnp.asarray(rng.standard_normal((fan_in, rows) if weights_first else (rows, fan_in), np.float32))
    out = (fan_out, rows) if weights_first else (rows, fan_out)

    @jax.jit
    def run(x, ws):
        def body(i, acc):
            xi = x + i.astype(jnp.float32)  # varies per step: nothing is hoisted out of the loop
            for w in ws:
                acc = acc + (w @ xi if weights_first else xi @ w)
            return acc

        return jax.lax.fori_loop(0, 4, body, jnp.zeros(out, jnp.float32))

    run(x, ws).block_until_ready()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(x, ws).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * rows * fan_in * fan_out * layers * 4 / float(np.median(times)) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    if args.batch < 1:
        parser.error("--batch must be >= 1")
    layers = PRESETS[args.preset]["layers"]
    print(f"square float32 matmul peak: {matmul_peak_gflops():.0f} GFLOP/s")
    for name, (fan_in, fan_out) in product_shapes(args.preset).items():
        copies = 1 if name == "logits" else layers
        rates = [gflops(args.batch, fan_in, fan_out, copies, first) for first in (False, True)]
        print(
            f"{name:8s} [{args.batch}, {fan_in}] x [{fan_in}, {fan_out}] x{copies}: "
            f"x @ w {rates[0]:.0f} GFLOP/s, w @ x {rates[1]:.0f} GFLOP/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
