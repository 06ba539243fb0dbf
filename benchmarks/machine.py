"""The machine a benchmark ran on: CPU model, cores, accelerators and a measured matmul peak."""

from __future__ import annotations

import os
import platform
import time

import numpy as np


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n matmul, over JAX (XLA) and NumPy (BLAS)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    x = np.ones((n, n), np.float32)
    for _ in range(repeats):
        t = time.perf_counter()
        x @ x
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def describe_machine(peak_gflops: float) -> str:
    import jax

    devices = jax.devices()
    return (
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {devices[0].platform} backend "
        f"({len(devices)} x {devices[0].device_kind}), measured float32 matmul peak {peak_gflops:.0f} GFLOP/s; "
        f"jax {jax.__version__}; {time.strftime('%Y-%m-%d')}."
    )
