"""Fingerprints of the float32 operations a train step is made of, on this CPU: run it on two
machines (or here and under an emulated CPU) and compare the lines to see which operations
round differently. docs/star.md#reproducibility explains what it found and why it matters.

    .venv/bin/python scripts/cpu_numerics.py
    PYTHONPATH=.venv/lib/python3.12/site-packages qemu-x86_64 -cpu Haswell \\
        $(readlink -f .venv/bin/python) scripts/cpu_numerics.py      # a CPU without AVX-512

Each line: an operation, its shapes, and the first 12 hex digits of the sha256 of its result.
"""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np


def digest(x) -> str:
    return hashlib.sha256(np.asarray(x).tobytes()).hexdigest()[:12]


def main() -> None:
    rng = np.random.default_rng(0)
    normal = lambda *shape: rng.standard_normal(shape, np.float32)  # noqa: E731
    cases = []
    # Products: a forward product contracts over a row's features; a weight gradient contracts
    # over the tokens of the batch (the major dimension of both operands).
    for k in (128, 512, 1024, 4096):
        cases.append((f"x[512,{k}] @ w[{k},256]", lambda a, b: a @ b, (normal(512, k), normal(k, 256))))
    for k in (512, 4096):
        cases.append((f"x[{k},128].T @ g[{k},512]", lambda a, b: a.T @ b, (normal(k, 128), normal(k, 512))))
    x = normal(4096, 128) * 3
    cases += [
        ("rsqrt", jax.lax.rsqrt, (x * x + 1e-6,)),
        ("rmsnorm", lambda v: v * jax.lax.rsqrt(jnp.mean(v * v, -1, keepdims=True) + 1e-6), (x,)),
        ("exp", jnp.exp, (x,)),
        ("log", jnp.log, (jnp.abs(x) + 1e-3,)),
        ("silu", jax.nn.silu, (x,)),
        ("softmax over 128", lambda v: jax.nn.softmax(v, -1), (x,)),
        ("sum of 4096x128", jnp.sum, (x,)),
    ]
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}")
    for name, fn, args in cases:
        print(f"{name:28s} {digest(jax.jit(fn)(*args))}")


if __name__ == "__main__":
    main()
