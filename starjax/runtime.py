"""Process-level JAX set-up and the device mesh.

`setup_runtime` must run before anything touches a JAX device: fake CPU device counts and the
platform choice are fixed when JAX initialises its backends.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

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
        _update_before_start(
            "jax_platforms", cfg.platform, f"runtime.platform={cfg.platform}", lambda: jax.default_backend() == cfg.platform
        )
    if cfg.num_cpu_devices and jax.config.jax_num_cpu_devices != cfg.num_cpu_devices:
        _update_before_start(
            "jax_num_cpu_devices",
            cfg.num_cpu_devices,
            f"runtime.num_cpu_devices={cfg.num_cpu_devices}",
            lambda: len(jax.devices("cpu")) == cfg.num_cpu_devices,
        )
    if host_memory.is_tuned():
        # the train loop waits for every step anyway; run synchronously, an execution frees its
        # scratch buffer before the next allocates one, so the heap keeps one of them, not two
        jax.config.update("jax_cpu_enable_async_dispatch", False)


def _update_before_start(flag: str, value: object, what: str, holds: Callable[[], bool]) -> None:
    """Sets a flag JAX reads when it starts; once started, fine if the running JAX already
    `holds` the setting (e.g. one CPU device, JAX's default, started before the config was read)."""
    try:
        jax.config.update(flag, value)
    except RuntimeError:
        if holds():
            return
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
            f"{key} {shape} needs {needed} devices but {num_devices} are available; change {key}.data/fsdp/tensor (one may be -1)"
        )
    return tuple(sizes)  # type: ignore[return-value]


def build_mesh(cfg: MeshConfig, devices: list | None = None, partial: bool = False) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh over `devices` (default: all devices of all processes;
    with `partial`, the first ones it needs)."""
    if devices is None:
        shape = mesh_shape(cfg, jax.device_count(), partial)
        if math.prod(shape) == jax.device_count():
            return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
        devices = jax.devices()
    return _mesh_over(devices, mesh_shape(cfg, len(devices), partial))


def _mesh_over(devices: Sequence, shape: tuple[int, ...]) -> Mesh:
    """A mesh of `shape` over the first devices of `devices`."""
    grid = np.asarray(devices[: math.prod(shape)]).reshape(shape)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def sampler_rules(cfg: SamplerConfig, trainer: AxisRules) -> list[AxisRules]:
    """The meshes generation runs on, one per replica (`sampler.replicas`), each over its own
    devices in order: `sampler.mesh`'s shape (a -1 axis shares the devices among the replicas),
    or the trainer's. Just the trainer's when neither is set."""
    if cfg.mesh is None and cfg.replicas == 1:
        return [trainer]
    devices = jax.devices()
    if cfg.mesh is None:
        shape, rules = tuple(trainer.mesh.shape[a] for a in MESH_AXES), trainer.rules
    else:
        shape = mesh_shape(cfg.mesh, len(devices) // cfg.replicas, partial=True, key="sampler.mesh")
        rules = AxisRules.from_config(trainer.mesh, cfg.mesh.rules).rules
    n = math.prod(shape)
    if n * cfg.replicas > len(devices):
        raise ConfigError(
            f"sampler.replicas={cfg.replicas} of {n} device(s) each need {n * cfg.replicas}, but {len(devices)} are "
            "available; lower sampler.replicas or the replica's mesh (sampler.mesh, else mesh)"
        )
    return [AxisRules(_mesh_over(devices[r * n :], shape), rules) for r in range(cfg.replicas)]


def axes_text(sizes: Mapping[str, int]) -> str:
    """Mesh axis sizes as `starjax info` prints them: "data=2 x fsdp=1 x tensor=1"."""
    return " x ".join(f"{name}={size}" for name, size in sizes.items())


def describe_runtime(mesh: Mesh, sampler_meshes: Sequence[Mesh] = ()) -> list[tuple[str, str]]:
    """Key facts about this process and the mesh (and generation's, when it has its own), for
    `starjax info` and run logs."""
    devices = jax.devices()
    sampler = []
    if sampler_meshes:
        one = axes_text(sampler_meshes[0].shape)
        copies = f"{len(sampler_meshes)} replicas, each " if len(sampler_meshes) > 1 else ""
        sampler = [("sampler", f"{copies}{one}")]
    return [
        ("jax", jax.__version__),
        ("backend", jax.default_backend()),
        ("devices", f"{len(devices)} x {devices[0].device_kind} ({jax.local_device_count()} local)"),
        ("process", f"{jax.process_index()} of {jax.process_count()}"),
        ("mesh", axes_text(mesh.shape)),
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
    if cfg.sampler.mesh is None and cfg.sampler.replicas == 1:
        return AxisRules.from_config(build_mesh(cfg.mesh), cfg.mesh.rules)
    # The trainer's mesh and generation's (sampler.mesh, sampler.replicas) each take the first
    # devices they need; together they must use every device.
    rules = AxisRules.from_config(build_mesh(cfg.mesh, partial=True), cfg.mesh.rules)
    replicas = sampler_rules(cfg.sampler, rules)
    sizes = (rules.mesh.size, sum(r.mesh.size for r in replicas))
    if jax.process_count() > 1 and min(sizes) < jax.device_count():
        raise ConfigError(
            f"with {jax.process_count()} processes, the trainer's mesh and generation's (sampler.mesh x "
            f"sampler.replicas) must each span all {jax.device_count()} devices"
        )
    if max(sizes) < jax.device_count():
        raise ConfigError(
            f"mesh uses {sizes[0]} and generation (sampler.mesh x sampler.replicas) {sizes[1]} of the "
            f"{jax.device_count()} devices; let one of them use all (an axis of -1)"
        )
    return rules


def _shared_yaml(cfg: Config) -> str:
    """The config every process must share: all of it but the per-process distributed keys."""
    shared = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, distributed=DistributedConfig()))
    return to_yaml(shared)
