"""Sharded == single device, parameter shardings follow the rules, mesh construction."""

import dataclasses
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_rules
from flax import nnx
from jax.sharding import PartitionSpec as P

from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.model.kv_cache import KVCache
from starjax.model.transformer import create_model
from starjax.runtime import build_mesh, mesh_shape, sampler_rules, setup_runtime, start
from starjax.schema import MeshConfig, RuntimeConfig

# What the default rules must give on a data x fsdp x tensor mesh (a golden table: a change
# to the defaults has to change this on purpose).
EXPECTED_SPECS = {
    "embed": P("tensor", "fsdp"),
    "lm_head": P("fsdp", "tensor"),
    "final_norm.scale": P(None),
    "attn.q": P("fsdp", "tensor", None),
    "attn.k": P("fsdp", "tensor", None),
    "attn.v": P("fsdp", "tensor", None),
    "attn.o": P("tensor", None, "fsdp"),
    "attn.q_bias": P("tensor", None),
    "attn.k_bias": P("tensor", None),
    "attn.v_bias": P("tensor", None),
    "attn_norm.scale": P(None),
    "mlp_norm.scale": P(None),
    "mlp.gate": P("fsdp", "tensor"),
    "mlp.up": P("fsdp", "tensor"),
    "mlp.down": P("tensor", "fsdp"),
}


def param_name(path):
    name = ".".join(map(str, path))
    return name.split(".", 2)[2] if name.startswith("blocks.") else name


def run(model, tokens, positions=None, segments=None, cache=None):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))(state, tokens, positions, segments, cache)


@pytest.fixture
def full_cfg(model_cfg):
    return dataclasses.replace(model_cfg, tie_embeddings=False, qkv_bias=True)


def test_parameter_shardings_follow_the_rules(full_cfg):
    rules = make_rules((2, 2, 2))
    model = create_model(full_cfg, rules)
    seen = set()
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        name = param_name(path)
        sharding = var[...].sharding
        assert sharding.mesh.shape == {"data": 2, "fsdp": 2, "tensor": 2}
        assert sharding.spec == EXPECTED_SPECS[name], name
        assert sharding.spec == rules.spec(var.get_metadata()["out_sharding"])
        # each device really holds only its shard
        shard_shape = sharding.shard_shape(var[...].shape)
        assert var[...].addressable_shards[0].data.shape == shard_shape
        seen.add(name)
    assert seen == set(EXPECTED_SPECS)


def test_rules_from_config_change_the_layout(full_cfg):
    rules = make_rules((2, 2, 2), ["mesh.rules.embed=[]", "mesh.rules.mlp=[fsdp,tensor]"])
    model = create_model(full_cfg, rules)
    assert model.embed[...].sharding.spec == P("tensor", None)
    assert model.blocks[0].mlp.gate[...].sharding.spec == P(None, ("fsdp", "tensor"))


def test_sharded_forward_equals_single_device(full_cfg):
    single = make_rules((1, 1, 1))
    sharded = make_rules((2, 2, 2))
    m1 = create_model(full_cfg, single, seed=3)
    m8 = create_model(full_cfg, sharded, seed=3)
    # initialisation does not depend on the mesh
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(m1)), nnx.to_flat_state(nnx.state(m8))):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]), err_msg=str(path))
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, full_cfg.vocab_size, (8, 16)), jnp.int32)
    ref, _ = run(m1, tokens)
    out, _ = run(m8, tokens)
    assert out.sharding.spec == P(("data", "fsdp"), None, "tensor")
    assert len(out.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_sharded_cached_decode_equals_single_device(model_cfg):
    results = []
    for shape in ((1, 1, 1), (2, 2, 2)):
        rules = make_rules(shape)
        model = create_model(model_cfg, rules, seed=4)
        tokens = jnp.asarray(np.random.RandomState(1).randint(0, model_cfg.vocab_size, (4, 6)), jnp.int32)
        pos = jnp.broadcast_to(jnp.arange(6), (4, 6))
        cache = KVCache.init(model_cfg, rules, batch=4, length=8)
        if shape == (2, 2, 2):
            assert cache.k[0].sharding.spec == P(("data", "fsdp"), "tensor", None, None)
        first, cache = run(model, tokens[:, :5], pos[:, :5], None, cache)
        last, cache = run(model, tokens[:, 5:], pos[:, 5:], None, cache)
        results.append(np.concatenate([first, last], axis=1))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-5)


def test_unknown_logical_axis_names_the_fix():
    rules = make_rules()
    with pytest.raises(KeyError, match="add mesh.rules.experts"):
        rules.spec(("experts", "embed"))


def test_mesh_shape_resolution():
    assert mesh_shape(MeshConfig(data=-1, fsdp=2, tensor=2), 8) == (2, 2, 2)
    assert mesh_shape(MeshConfig(data=1, fsdp=-1, tensor=1), 8) == (1, 8, 1)
    with pytest.raises(ConfigError, match="mesh 2x2x1 needs 4 devices but 8 are available"):
        mesh_shape(MeshConfig(data=2, fsdp=2, tensor=1), 8)
    with pytest.raises(ConfigError, match="not divisible"):
        mesh_shape(MeshConfig(data=-1, fsdp=3, tensor=1), 8)
    with pytest.raises(ConfigError, match="at most one of sampler.mesh.data, sampler.mesh.fsdp, sampler.mesh.tensor may be -1"):
        load_config(None, ["sampler.mesh.fsdp=-1"])  # data is -1 by default


def test_generation_meshes_let_the_trainer_take_fewer_devices():
    """With sampler.mesh or sampler.replicas, the trainer's mesh and generation's each take the
    first devices they need (replica r the r-th group); together they must use all."""
    rules = start(load_config(None, ["mesh.data=2", "sampler.mesh.data=-1"]))
    assert list(rules.mesh.devices.flat) == jax.devices()[:2]
    (whole,) = sampler_rules(load_config(None, ["sampler.mesh.data=1", "sampler.mesh.fsdp=-1"]).sampler, rules)
    assert whole.mesh.shape["fsdp"] == 8
    replicas = sampler_rules(
        load_config(None, ["sampler.engine=fixed", "sampler.replicas=4"]).sampler, rules
    )  # the trainer's 2-device shape
    assert [list(r.mesh.devices.flat) for r in replicas] == [jax.devices()[i : i + 2] for i in (0, 2, 4, 6)]
    assert all(r.rules == rules.rules and r.mesh.shape == rules.mesh.shape for r in replicas)
    shared = sampler_rules(
        load_config(
            None, ["sampler.engine=fixed", "sampler.replicas=2", "sampler.mesh.data=1", "sampler.mesh.tensor=-1"]
        ).sampler,
        rules,
    )
    assert [r.mesh.shape["tensor"] for r in shared] == [4, 4]
    assert start(load_config(None, ["mesh.data=1", "sampler.engine=fixed", "sampler.replicas=8"])).mesh.size == 1
    with pytest.raises(ConfigError, match="mesh 1x1x1 needs 1 devices but 8 are available"):
        start(load_config(None, ["mesh.data=1"]))  # without either, every device is the trainer's
    with pytest.raises(ConfigError, match=r"mesh uses 2 and generation \(sampler.mesh x sampler.replicas\) 4 of the 8"):
        start(load_config(None, ["mesh.data=2", "sampler.mesh.data=4"]))
    with pytest.raises(ConfigError, match="sampler.mesh 16x1x1 needs 16 devices but 8 are available; change sampler.mesh"):
        start(load_config(None, ["mesh.data=1", "sampler.mesh.data=16"]))
    with pytest.raises(ConfigError, match="sampler.replicas=5 of 2 device.s. each need 10, but 8 are available"):
        start(load_config(None, ["mesh.data=2", "sampler.engine=fixed", "sampler.replicas=5"]))


def test_build_mesh_uses_all_devices_by_default():
    mesh = build_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert mesh.devices.size == jax.device_count() == 8


def test_device_count_cannot_change_after_start():
    setup_runtime(RuntimeConfig(num_cpu_devices=8))  # already true: no-op
    with pytest.raises(ConfigError, match="must be applied before JAX starts"):
        setup_runtime(RuntimeConfig(num_cpu_devices=4))


def test_a_setting_the_started_jax_already_has_is_accepted():
    """A process that used JAX before reading its config (a benchmark timing the machine first)
    started it with one CPU device, JAX's default: a config asking for one must not fail."""
    code = (
        "import jax; jax.devices()\n"
        "from starjax.errors import ConfigError\n"
        "from starjax.runtime import setup_runtime\n"
        "from starjax.schema import RuntimeConfig\n"
        "setup_runtime(RuntimeConfig(num_cpu_devices=1, platform='cpu'))\n"
        "try:\n"
        "    setup_runtime(RuntimeConfig(num_cpu_devices=2))\n"
        "except ConfigError as e:\n"
        "    print('refused:', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "JAX_PLATFORMS": "cpu"}, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == (
        "refused: runtime.num_cpu_devices=2 must be applied before JAX starts; set it in the config, not after using JAX"
    )
