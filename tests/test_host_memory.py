"""XLA:CPU's per-execution scratch memory is reused, not faulted in afresh, once starjax is imported."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="malloc options are glibc's"
)

# a 128 MB scratch buffer per call (sin and cumsum of a 64 MB array), a scalar result
PROGRAM = """
import resource, statistics
import starjax
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.cumsum(jnp.sin(x), axis=0)[::512].sum())
x = jnp.ones((4096, 4096))
faults = []
for _ in range(30):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(starjax.HOST_MALLOC_TUNED, statistics.median(faults[10:]))
"""


def _run(setting: str) -> tuple[str, float]:
    env = {**os.environ, "STARJAX_HOST_MALLOC": setting, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    return tuned, float(faults)


def test_scratch_memory_is_reused_between_executions():
    tuned, faults = _run("reuse")
    assert tuned == "True"
    assert faults < 1000  # 4 KiB pages: the 128 MB buffer alone would be ~32,000


def test_system_setting_leaves_glibc_defaults():
    tuned, faults = _run("system")
    assert tuned == "False"
    assert faults > 16000  # the scratch buffer is mmapped and faulted in on every call


def test_unknown_setting_warns_and_changes_nothing(monkeypatch):
    from starjax.host_memory import keep_freed_host_memory

    monkeypatch.setenv("STARJAX_HOST_MALLOC", "jemalloc")
    with pytest.warns(UserWarning, match="STARJAX_HOST_MALLOC='jemalloc'"):
        assert keep_freed_host_memory() is False
