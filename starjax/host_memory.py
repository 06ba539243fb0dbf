"""glibc malloc settings that let XLA:CPU reuse its scratch memory between executions.

XLA:CPU allocates every execution's scratch buffer afresh (about 600 MB for a `tiny` train
step) from one of its worker threads. glibc serves an allocation that large with a new `mmap`
and returns it with `munmap`, so each step touches hundreds of MB of new pages: about 150,000
page faults for a `tiny` train step, which then runs at about 1/1.25 of its speed on a 2-core
CPU (docs/training.md). With one arena, no `mmap` and no trimming, the freed block stays in the
heap and the next step reuses it.

Applied when `starjax` is imported, before JAX starts its threads (glibc fixes a thread's arena
at its first allocation). The costs: freed host memory is kept for reuse rather than returned
to the system, and a process with many devices that compiles many small programs (the test
suite) runs slower. The single arena causes that slowdown, and the reuse needs it
(docs/training.md). `STARJAX_HOST_MALLOC=system` leaves glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
import warnings

ENV_VAR = "STARJAX_HOST_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc <malloc.h>


def keep_freed_host_memory() -> bool:
    """Sets the malloc options above; False where they do not apply or glibc refuses one."""
    setting = os.environ.get(ENV_VAR, "reuse")
    if setting not in ("reuse", "system"):  # a warning, not an error: this runs at import
        warnings.warn(f"{ENV_VAR}={setting!r} is not 'reuse' or 'system'; leaving glibc's malloc defaults", stacklevel=2)
        return False
    if setting == "system" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(option, value) == 1 for option, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
