"""8 fake CPU devices for every test, fixed before JAX initialises its backends."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)
# Started here, so commands run in this process keep glibc's malloc defaults (runtime.host_malloc
# applies only before JAX starts): with 8 fake devices and hundreds of small programs the reuse
# settings make the suite slower (tests/test_sampler.py: 147 s against 90 s). Commands run as
# subprocesses (CLI, reproducibility and multi-host tests) get the default; test_host_memory.py checks it.
jax.devices()

from starjax.config import load_config  # noqa: E402
from starjax.runtime import build_mesh  # noqa: E402
from starjax.sharding import AxisRules  # noqa: E402

# configs/demo.yaml shrunk to a STaR run of seconds (base pre-training and two iterations).
SMALL_DEMO = [
    "model.num_layers=2",
    "model.d_model=64",
    "model.num_heads=4",
    "model.num_kv_heads=2",
    "model.mlp_dim=128",
    "task.addition.min_digits=1",
    "task.addition.max_digits=3",
    "task.addition.train_size=48",
    "task.addition.test_size=16",
    "task.addition.seed_size=400",
    "pretrain.steps=40",
    # the demo's stop at 5-digit sums, at the longest sums here: one check, at step 20
    "pretrain.stop_difficulty=3",
    "pretrain.stop_every=20",
    "train.batch_size=8",
    "train.checkpoint_every=4",
    "sampler.batch_size=32",
    "sampler.max_new_tokens=64",
    "sampler.prompt_buckets=[32]",
    "sampler.progress=false",
    "star.iterations=2",
    "star.first_steps=6",
    "star.num_samples=4",
]

# Small enough to compile in a second or two, with every feature shape still exercised
# (GQA with 2 groups, 2 layers, tensor-shardable heads and vocab).
SMALL_MODEL = [
    "model.vocab_size=64",
    "model.num_layers=2",
    "model.d_model=64",
    "model.num_heads=4",
    "model.num_kv_heads=2",
    "model.mlp_dim=128",
]


def make_rules(mesh_shape=(1, 1, 1), overrides=()):
    """AxisRules for a data x fsdp x tensor mesh over the first prod(mesh_shape) devices."""
    d, f, t = mesh_shape
    cfg = load_config(None, [f"mesh.data={d}", f"mesh.fsdp={f}", f"mesh.tensor={t}", *overrides])
    mesh = build_mesh(cfg.mesh, jax.devices()[: d * f * t])
    return AxisRules.from_config(mesh, cfg.mesh.rules)


@pytest.fixture
def model_cfg():
    return load_config(None, SMALL_MODEL).model
