"""The host allocator: nothing changes at import; `setup_runtime` applies `runtime.host_malloc`,
whose default on CPU lets XLA:CPU reuse its per-execution scratch memory instead of faulting it in."""

import platform
import subprocess
import sys

import pytest

from starjax import host_memory
from starjax.config import load_config
from starjax.errors import ConfigError

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="malloc options are glibc's")

# a 128 MB scratch buffer per call (sin and cumsum of a 64 MB array), a scalar result
PROGRAM = """
import resource, statistics, sys
import starjax.cli, starjax.star.loop, starjax.theory  # imports alone must change nothing
from starjax import host_memory
from starjax.config import load_config
from starjax.runtime import setup_runtime
if sys.argv[1] != "import-only":
    setup_runtime(load_config(None, sys.argv[1:]).runtime)
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.cumsum(jnp.sin(x), axis=0)[::512].sum())
x = jnp.ones((4096, 4096))
faults = []
for _ in range(30):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(host_memory.is_tuned(), statistics.median(faults[10:]))
"""


def _run(*args: str) -> tuple[str, float]:
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", PROGRAM, *args], env=env, capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    return tuned, float(faults)


@glibc
def test_the_default_on_cpu_reuses_scratch_memory_between_executions():
    tuned, faults = _run("seed=0")  # the schema's defaults: runtime.host_malloc=auto
    assert tuned == "True"
    assert faults < 1000  # 4 KiB pages: the 128 MB buffer alone would be ~32,000


@glibc
@pytest.mark.parametrize("args", [("import-only",), ("runtime.host_malloc=system",)])
def test_importing_or_the_system_setting_leaves_glibc_defaults(args):
    tuned, faults = _run(*args)
    assert tuned == "False"
    assert faults > 16000  # the scratch buffer is mmapped and faulted in on every call


def test_auto_applies_on_cpu_only():
    assert host_memory.wanted("auto", "cpu") and not host_memory.wanted("auto", "gpu")
    assert not host_memory.wanted("auto", "tpu") and host_memory.wanted("reuse", "gpu")
    assert not host_memory.wanted("system", "cpu")


def test_too_late_once_jax_has_started():
    # conftest started JAX: the settings would reach only threads created from now on
    assert host_memory.apply("reuse", "cpu") is False and not host_memory.is_tuned()


def test_unknown_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="runtime.host_malloc='jemalloc' must be one of auto, reuse, system"):
        load_config(None, ["runtime.host_malloc=jemalloc"])
