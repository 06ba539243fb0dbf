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
from starjax.schema import MESH_AXES, Config, DistributedConfig, MeshConfig, RuntimeConfig, SamplerConfig
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


def mesh_shape(cfg: MeshConfig, num_devices: int, partial: bool = False, key: str = "mesh") -> tuple[int, int, int]:
    """Resolves a -1 axis to the remaining devices and checks the product. `partial`: the mesh
    may take fewer devices than there are (the first ones). `key`: the config key, for errors."""
    sizes = [getattr(cfg, a) for a in MESH_AXES]
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ConfigError(
                f"cannot fill {key} axis {MESH_AXES[sizes.index(-1)]}=-1: {num_devices} devices "
                f"are not divisible by the other axes' product {known}"
            )
        sizes[sizes.index(-1)] = num_devices // known
    needed = math.prod(sizes)
    if needed > num_devices or (needed < num_devices and not partial):
        shape = "x".join(map(str, sizes))
        raise ConfigError(
            f"{key} {shape} needs {needed} devices but {num_devices} are available; "
            f"change {key}.data/fsdp/tensor (one may be -1)"
        )
    return tuple(sizes)  # type: ignore[return-value]


def build_mesh(cfg: MeshConfig, devices: list | None = None, partial: bool = False, key: str = "mesh") -> Mesh:
    """A ("data", "fsdp", "tensor") mesh over `devices` (default: all devices of all processes;
    with `partial`, the first ones it needs)."""
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    if devices is None:
        shape = mesh_shape(cfg, jax.device_count(), partial, key)
        if math.prod(shape) == jax.device_count():
            return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types)
        devices = jax.devices()
    shape = mesh_shape(cfg, len(devices), partial, key)
    return Mesh(np.asarray(devices[: math.prod(shape)]).reshape(shape), MESH_AXES, axis_types=axis_types)


def sampler_rules(cfg: SamplerConfig, trainer: AxisRules) -> AxisRules:
    """The mesh generation runs on: `sampler.mesh` when set (over the first devices it needs),
    else the trainer's. Generation's rows are independent, so splitting them over more devices
    changes no sample; the trainer's mesh also sets the order gradients are summed in."""
    if cfg.mesh is None:
        return trainer
    return AxisRules.from_config(build_mesh(cfg.mesh, partial=True, key="sampler.mesh"), cfg.mesh.rules)


def describe_runtime(mesh: Mesh, sampler_mesh: Mesh | None = None) -> list[tuple[str, str]]:
    """Key facts about this process and the mesh (and generation's, when it has its own), for
    `starjax info` and run logs."""
    devices = jax.devices()
    shape = " x ".join(f"{name}={size}" for name, size in mesh.shape.items())
    sampler = [] if sampler_mesh is None else [("sampler", " x ".join(f"{n}={size}" for n, size in sampler_mesh.shape.items()))]
    return [
        ("jax", jax.__version__),
        ("backend", jax.default_backend()),
        ("devices", f"{len(devices)} x {devices[0].device_kind} ({jax.local_device_count()} local)"),
        ("process", f"{jax.process_index()} of {jax.process_count()}"),
        ("mesh", shape),
        *sampler,
        ("host malloc", "scratch memory reused (starjax/host_memory.py)" if host_memory.is_tuned() else "glibc defaults"),
    ]


def start(cfg: Config) -> AxisRules:
    """What every command does first: JAX settings, the distributed runtime when configured
    (every process must run the same config), then the mesh and its sharding rules."""
    setup_runtime(cfg.runtime)
    multihost.initialize(cfg.runtime.distributed)
    storage.require_one_process(cfg.run_dir, "run_dir")
    multihost.agree_on_config(_shared_yaml(cfg))
    if cfg.sampler.mesh is None:
        return AxisRules.from_config(build_mesh(cfg.mesh), cfg.mesh.rules)
    # Two meshes, each over the first devices it needs; together they must use every device.
    rules = AxisRules.from_config(build_mesh(cfg.mesh, partial=True), cfg.mesh.rules)
    sizes = (rules.mesh.size, sampler_rules(cfg.sampler, rules).mesh.size)
    if jax.process_count() > 1 and min(sizes) < jax.device_count():
        raise ConfigError(
            f"with {jax.process_count()} processes, mesh and sampler.mesh must each span all "
            f"{jax.device_count()} devices (give each an axis of -1)"
        )
    if max(sizes) < jax.device_count():
        raise ConfigError(
            f"mesh uses {sizes[0]} and sampler.mesh {sizes[1]} of the {jax.device_count()} devices; "
            "let one of them use all (an axis of -1)"
        )
    return rules


def _shared_yaml(cfg: Config) -> str:
    """The config every process must share: all of it but the per-process distributed keys."""
    shared = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, distributed=DistributedConfig()))
    return to_yaml(shared)
