"""Process-level JAX set-up and the device mesh.

`setup_runtime` must run before anything touches a JAX device: fake CPU device counts and the
platform choice are fixed when JAX initialises its backends.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from starjax import host_memory, multihost, storage
from starjax.config import to_yaml
from starjax.errors import ConfigError
from starjax.schema import MESH_AXES, Config, DistributedConfig, MeshConfig, RuntimeConfig
from starjax.sharding import AxisRules


def setup_runtime(cfg: RuntimeConfig) -> None:
    """Applies the host allocator, platform and fake-device settings; a no-op when they already hold."""
    host_memory.apply(cfg.host_malloc, cfg.platform)
    if cfg.platform is not None and jax.config.jax_platforms != cfg.platform:
        _update_before_start("jax_platforms", cfg.platform, f"runtime.platform={cfg.platform}")
    if cfg.num_cpu_devices and jax.config.jax_num_cpu_devices != cfg.num_cpu_devices:
        _update_before_start("jax_num_cpu_devices", cfg.num_cpu_devices, f"runtime.num_cpu_devices={cfg.num_cpu_devices}")
    if host_memory.is_tuned():
        # the train loop waits for every step anyway; run synchronously, an execution frees its
        # scratch buffer before the next allocates one, so the heap keeps one of them, not two
        jax.config.update("jax_cpu_enable_async_dispatch", False)


def _update_before_start(flag: str, value: object, what: str) -> None:
    try:
        jax.config.update(flag, value)
    except RuntimeError:
        raise ConfigError(f"{what} must be applied before JAX starts; set it in the config, not after using JAX") from None


def mesh_shape(cfg: MeshConfig, num_devices: int) -> tuple[int, int, int]:
    """Resolves a -1 axis to the remaining devices and checks the product."""
    sizes = [getattr(cfg, a) for a in MESH_AXES]
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ConfigError(
                f"cannot fill mesh axis {MESH_AXES[sizes.index(-1)]}=-1: {num_devices} devices "
                f"are not divisible by the other axes' product {known}"
            )
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        shape = "x".join(map(str, sizes))
        raise ConfigError(
            f"mesh {shape} needs {math.prod(sizes)} devices but {num_devices} are available; "
            "change mesh.data/fsdp/tensor (one may be -1)"
        )
    return tuple(sizes)  # type: ignore[return-value]


def build_mesh(cfg: MeshConfig, devices: list | None = None) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh over `devices` (default: all devices of all processes)."""
    if devices is None:
        shape = mesh_shape(cfg, jax.device_count())
        return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
    shape = mesh_shape(cfg, len(devices))
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def describe_runtime(mesh: Mesh) -> list[tuple[str, str]]:
    """Key facts about this process and the mesh, for `starjax info` and run logs."""
    devices = jax.devices()
    shape = " x ".join(f"{name}={size}" for name, size in mesh.shape.items())
    return [
        ("jax", jax.__version__),
        ("backend", jax.default_backend()),
        ("devices", f"{len(devices)} x {devices[0].device_kind} ({jax.local_device_count()} local)"),
        ("process", f"{jax.process_index()} of {jax.process_count()}"),
        ("mesh", shape),
        ("host malloc", "scratch memory reused (starjax/host_memory.py)" if host_memory.is_tuned() else "glibc defaults"),
    ]


def start(cfg: Config) -> AxisRules:
    """What every command does first: JAX settings, the distributed runtime when configured
    (every process must run the same config), then the mesh and its sharding rules."""
    setup_runtime(cfg.runtime)
    multihost.initialize(cfg.runtime.distributed)
    storage.require_one_process(cfg.run_dir, "run_dir")
    multihost.agree_on_config(_shared_yaml(cfg))
    return AxisRules.from_config(build_mesh(cfg.mesh), cfg.mesh.rules)


def _shared_yaml(cfg: Config) -> str:
    """The config every process must share: all of it but the per-process distributed keys."""
    shared = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, distributed=DistributedConfig()))
    return to_yaml(shared)
