"""Fingerprints of the float32 operations a train step is made of, on this CPU: run it on two
machines (or here and under an emulated CPU) and compare the lines to see which operations
round differently. docs/star.md#reproducibility explains what it found and why it matters.

    .venv/bin/python scripts/cpu_numerics.py
    PYTHONPATH=.venv/lib/python3.12/site-packages qemu-x86_64 -cpu Haswell \\
        $(readlink -f .venv/bin/python) scripts/cpu_numerics.py      # a CPU without AVX-512

Each line: an operation, its shapes, the first 12 hex digits of the sha256 of its result, and
its error against the same operation in float64 (NumPy): the largest difference over the
largest magnitude of the exact result, in units of float32's unit roundoff (2**-24). A CPU
that rounds differently shows other digests at errors of a few units; one that computed in
lower precision (bfloat16 products, approximate transcendentals) would show hundreds or more.
"""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np

UNIT_ROUNDOFF = 2.0**-24


def digest(x) -> str:
    return hashlib.sha256(np.asarray(x).tobytes()).hexdigest()[:12]


def error(result, exact: np.ndarray) -> float:
    """Normwise relative error of a float32 `result` against float64 `exact`, in unit roundoffs."""
    diff = np.abs(np.asarray(result, np.float64) - exact)
    return float(diff.max() / np.abs(exact).max() / UNIT_ROUNDOFF)


def _softmax64(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def main() -> None:
    rng = np.random.default_rng(0)
    normal = lambda *shape: rng.standard_normal(shape, np.float32)  # noqa: E731
    # (name, the jax operation, its float64 NumPy twin, arguments)
    cases = []
    # Products: a forward product contracts over a row's features; a weight gradient contracts
    # over the tokens of the batch (the major dimension of both operands).
    for k in (128, 512, 1024, 4096):
        product = lambda a, b: a @ b  # noqa: E731
        cases.append((f"x[512,{k}] @ w[{k},256]", product, product, (normal(512, k), normal(k, 256))))
    for k in (512, 4096):
        gradient = lambda a, b: a.T @ b  # noqa: E731
        cases.append((f"x[{k},128].T @ g[{k},512]", gradient, gradient, (normal(k, 128), normal(k, 512))))
    x = normal(4096, 128) * 3
    cases += [
        ("rsqrt", jax.lax.rsqrt, lambda v: 1 / np.sqrt(v), (x * x + 1e-6,)),
        (
            "rmsnorm",
            lambda v: v * jax.lax.rsqrt(jnp.mean(v * v, -1, keepdims=True) + 1e-6),
            lambda v: v / np.sqrt(np.mean(v * v, -1, keepdims=True) + 1e-6),
            (x,),
        ),
        ("exp", jnp.exp, np.exp, (x,)),
        ("log", jnp.log, np.log, (jnp.abs(x) + 1e-3,)),
        ("silu", jax.nn.silu, lambda v: v / (1 + np.exp(-v)), (x,)),
        ("softmax over 128", lambda v: jax.nn.softmax(v, -1), _softmax64, (x,)),
        ("sum of 4096x128", jnp.sum, np.sum, (x,)),
    ]
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}")
    print(f"{'operation':28s} {'digest':12s} error (unit roundoffs)")
    for name, fn, exact, args in cases:
        result = jax.jit(fn)(*args)
        print(f"{name:28s} {digest(result)} {error(result, exact(*(np.asarray(a, np.float64) for a in args))):.1f}")


if __name__ == "__main__":
    main()
