"""JAX's multi-controller runtime: one process per host (or per GPU), one global mesh.

Every process runs the same program over the same (deterministically ordered) data. What differs
lives here: joining the runtime, checking that every process has the same config, building
global arrays from host data (each process supplies only the blocks its devices hold), bringing
results back to every process, and letting process 0 alone touch shared files.
With one process every function here is a cheap no-op or a plain device transfer.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import sys
import threading
import time
import traceback
from typing import Any

import jax
import numpy as np

from starjax.errors import ConfigError
from starjax.schema import DistributedConfig

ENV_PREFIX = "STARJAX_"


def _env_args() -> dict[str, Any] | None:
    """Arguments from the STARJAX_* variables that scripts/launch_hosts.sh sets, if present."""
    if f"{ENV_PREFIX}COORDINATOR" not in os.environ:
        return None
    try:
        args: dict[str, Any] = {
            "coordinator_address": os.environ[f"{ENV_PREFIX}COORDINATOR"],
            "num_processes": int(os.environ[f"{ENV_PREFIX}NUM_PROCESSES"]),
            "process_id": int(os.environ[f"{ENV_PREFIX}PROCESS_ID"]),
        }
        ids = os.environ.get(f"{ENV_PREFIX}LOCAL_DEVICE_IDS")
        if ids:
            args["local_device_ids"] = [int(i) for i in ids.split(",")]
    except (KeyError, ValueError) as e:
        raise ConfigError(
            f"STARJAX_COORDINATOR is set but {e} is missing or not a number; set STARJAX_NUM_PROCESSES, "
            "STARJAX_PROCESS_ID (and optionally STARJAX_LOCAL_DEVICE_IDS=0,1,...)"
        ) from None
    return args


def initialize(d: DistributedConfig) -> None:
    """Joins the distributed runtime (before anything touches a device); a no-op when off or joined."""
    if d.mode == "off" or jax.distributed.is_initialized():
        return
    if d.mode == "explicit":
        args = {k: getattr(d, k) for k in ("coordinator_address", "num_processes", "process_id", "local_device_ids")}
    else:
        args = _env_args() or {}  # {}: JAX detects Cloud TPU VMs, SLURM and Open MPI itself
    # CPU devices of several processes form one mesh only with cross-process CPU collectives;
    # the setting touches nothing but the CPU backend, so it is safe on TPU and GPU hosts too.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            **{k: v for k, v in args.items() if v is not None},
            initialization_timeout=d.initialization_timeout,
            # JAX's own detection aborts with a stack trace: it is the backstop, given
            # three times as long as starjax's watchdog, which exits with a message.
            heartbeat_timeout_seconds=3 * d.heartbeat_timeout,
        )
    except (RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        hint = (
            ""
            if args
            else "; mode=auto found no Cloud TPU VM, SLURM or Open MPI job and no STARJAX_COORDINATOR: "
            "use runtime.distributed.mode=explicit or scripts/launch_hosts.sh"
        )
        raise ConfigError(f"cannot join the distributed runtime: {first}{hint}") from None
    if jax.process_count() > 1:
        _start_watchdog(float(d.heartbeat_timeout))


def _start_watchdog(limit: float) -> None:
    """Exits this process with one clear line when another process stops beating for `limit`
    seconds (before JAX's own, longer, detection aborts with a stack trace), or when the
    coordinator (process 0) is gone: never a hang in a collective that cannot finish."""
    from jax._src import distributed  # the coordination service's key-value store: no public API

    client, me, n = distributed.global_state.client, jax.process_index(), jax.process_count()
    stop = threading.Event()
    atexit.register(stop.set)

    def fail(msg: str) -> None:
        if not stop.is_set():
            print(
                f"\nstarjax: error: {msg}; this process (process {me}) exits. Rerun the same command on every "
                "host: the run resumes from its last checkpoint",
                file=sys.stderr,
                flush=True,
            )
            os._exit(1)

    # Two threads: `poll` talks to the coordination service, `watch` only reads clocks, so a
    # poll stuck in an RPC (seen when a peer dies mid-barrier) still ends in the message below.
    seen = {"round": time.monotonic(), "dead": None, "error": None}

    def poll() -> None:
        beats, changed = {p: -1 for p in range(n) if p != me}, {p: time.monotonic() for p in range(n) if p != me}
        while not stop.wait(1.0):
            try:
                client.key_value_increment(f"starjax/beat/{me}", 1)
                for p in beats:
                    try:
                        beat = int(client.key_value_try_get(f"starjax/beat/{p}"))
                    except Exception:  # not written yet: that process is still starting
                        beat = -1
                    if beat != beats[p]:
                        beats[p], changed[p] = beat, time.monotonic()
                    elif time.monotonic() - changed[p] > limit:
                        seen["dead"] = p
            except Exception as e:  # the coordination service itself is unreachable
                seen["error"] = (str(e).splitlines() or [type(e).__name__])[0][:120]
            seen["round"] = time.monotonic()

    def watch() -> None:
        while not stop.wait(0.5):
            if seen["dead"] is not None:
                fail(f"process {seen['dead']} stopped responding (no heartbeat for {limit:.0f} s)")
            if seen["error"] is not None:
                fail(f"lost the coordinator (process 0): {seen['error']}")
            if time.monotonic() - seen["round"] > limit + 2:
                fail(f"another process stopped responding (the coordination service gave no answer for {limit:.0f} s)")

    threading.Thread(target=poll, name="starjax-heartbeat", daemon=True).start()
    threading.Thread(target=watch, name="starjax-watchdog", daemon=True).start()


# Error text that means a peer is gone rather than a bug here.
_PEER_LOST = ("Connection closed by peer", "Connection reset", "Gloo", "UNAVAILABLE", "heartbeat", "DEADLINE_EXCEEDED")


def is_multiprocess() -> bool:
    return jax.distributed.is_initialized() and jax.process_count() > 1


def exit_after_error(e: BaseException) -> None:
    """Ends a multi-process run's process at once after an uncaught error: a normal exit would wait
    in JAX's shutdown barrier for peers that may be dead, then abort with a stack trace."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    me = jax.process_index()
    if any(s in str(e) for s in _PEER_LOST):
        what = f"lost another process during a collective ({first}); this process (process {me}) exits"
    else:
        traceback.print_exc()  # a bug, not a lost peer: show where
        what = f"process {me} stopped on {type(e).__name__}: {first}"
    print(
        f"\nstarjax: error: {what}. Rerun the same command on every host: the run resumes from its last checkpoint",
        file=sys.stderr,
        flush=True,
    )
    os._exit(1)


def is_lead() -> bool:
    """Process 0 writes logs, samples, plots, events and moves shared directories."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here until all arrive (e.g. after process 0 prepared a dataset)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def global_array(host: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """A global array from a host array every process holds: each process copies only the
    blocks its own devices hold."""
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_host(tree: Any) -> Any:
    """A pytree of (possibly multi-process) arrays as numpy on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def agree_on_config(config_yaml: str) -> None:
    """Fails every process with one line when their configs differ (a launch with different
    overrides would otherwise train on a mix, or deadlock in a collective)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    digest = np.frombuffer(hashlib.sha256(config_yaml.encode()).digest()[:16], np.int32)
    every = np.asarray(multihost_utils.process_allgather(digest[None], tiled=True))
    differ = [i for i in range(len(every)) if not np.array_equal(every[i], every[0])]
    if differ:
        raise ConfigError(
            f"process(es) {differ} run a different config than process 0; launch every process with "
            "the same config file and overrides"
        )
