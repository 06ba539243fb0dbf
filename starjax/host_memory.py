"""glibc malloc settings that let XLA:CPU reuse its scratch memory between executions.

XLA:CPU allocates every execution's scratch buffer afresh (about 600 MB for a `tiny` train
step) from one of its worker threads. glibc serves an allocation that large with a new `mmap`
and returns it with `munmap`, so each step touches hundreds of MB of new pages: about 150,000
page faults for a `tiny` train step, which then runs at about 1/1.25 of its speed on a 2-core
CPU (docs/training.md). With one arena, no `mmap` and no trimming, the freed block stays in the
heap and the next step reuses it.

Nothing happens at import: `runtime.setup_runtime` (the first thing every command does) applies
`runtime.host_malloc` before JAX starts its threads (glibc fixes a thread's arena at its first
allocation). "auto", the default, applies it on CPU runs and not where an accelerator is the
platform. The costs: freed host memory is kept for reuse rather than returned to the system,
and a process with many devices that compiles many small programs (the test suite) runs slower.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform

SETTINGS = ("auto", "reuse", "system")
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc <malloc.h>
# JAX's accelerator plugins: with one installed and no platform named, JAX picks the accelerator
_ACCELERATOR_MODULES = ("libtpu", "jax_cuda13_plugin", "jax_cuda12_plugin", "jax_rocm7_plugin", "jax_rocm60_plugin")
_tuned = False


def is_tuned() -> bool:
    """Whether this process runs with the settings (applied by `apply`)."""
    return _tuned


def wanted(setting: str, platform_name: str | None) -> bool:
    """Whether `setting` asks for the settings on `platform_name` (null: JAX's own choice)."""
    if setting != "auto":
        return setting == "reuse"
    chosen = platform_name or os.environ.get("JAX_PLATFORMS", "").split(",")[0] or None
    if chosen is not None:
        return chosen == "cpu"
    return not any(importlib.util.find_spec(m) for m in _ACCELERATOR_MODULES)


def apply(setting: str, platform_name: str | None) -> bool:
    """Sets the malloc options if `setting` wants them and JAX has not started (it is too late
    once its threads exist: the process keeps what it has). Returns `is_tuned()`."""
    global _tuned
    from jax._src import xla_bridge  # the one place that knows whether backends (and their threads) exist

    if _tuned or xla_bridge.backends_are_initialized() or not wanted(setting, platform_name):
        return _tuned
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    _tuned = all(mallopt(option, value) == 1 for option, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
    return _tuned
