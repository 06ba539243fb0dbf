"""`starjax info --memory`: the estimate against XLA's own accounting of the compiled train step,
the exact parts against real arrays, and the optimizer moments laid out as their parameters."""

import math

import jax
import jax.numpy as jnp
import pytest
from conftest import make_rules
from flax import nnx

from starjax.cli import main
from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.memory import estimate_memory
from starjax.model.kv_cache import KVCache
from starjax.model.transformer import create_model, with_rules
from starjax.sampling.engine import new_token_cap
from starjax.training.step import Batch, compile_train_step, init_state

TINY = ["model.preset=tiny", "model.vocab_size=1024", "train.batch_size=8", "train.seq_len=256"]


def _compiled_bytes(cfg, rules) -> int:
    """Peak bytes per device of the compiled train step, as XLA:CPU's buffer assignment counts
    them: arguments (state and batch) + temporaries + outputs not aliased to donated inputs."""
    model = create_model(cfg.model, rules, 0)
    state = init_state(model, cfg.train, 0)
    base = nnx.state(model) if cfg.train.lora_rank else None
    step = compile_train_step(nnx.graphdef(model), cfg.train, rules, state, base)
    shape = (cfg.train.batch_size, cfg.train.seq_len)
    i, f = jax.ShapeDtypeStruct(shape, jnp.int32), jax.ShapeDtypeStruct(shape, jnp.float32)
    m = step.lower(state, Batch(i, i, i, i, f)).compile().memory_analysis()
    return m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes


@pytest.mark.parametrize(
    "mesh, overrides",
    [
        ((8, 1, 1), ["train.remat=none"]),
        ((8, 1, 1), ["train.remat=dots_saveable", "model.vocab_size=8192"]),
        ((2, 2, 2), ["train.remat=none"]),
        ((1, 8, 1), ["train.remat=full", "train.batch_size=16", "train.micro_batches=2", "train.moment_dtype=bfloat16"]),
        ((1, 8, 1), ["train.lora_rank=8"]),
        ((1, 8, 1), ["model.preset=small", "model.vocab_size=32000", "train.remat=full", "model.compute_dtype=bfloat16"]),
        ((1, 8, 1), ["train.remat=full", "model.scan_layers=true"]),  # one layer gathered at a time
        ((2, 2, 2), ["train.remat=none", "model.scan_layers=true"]),
    ],
)
def test_estimate_within_20_percent_of_compiled_train_step(mesh, overrides):
    d, f, t = mesh
    cfg = load_config(None, [*TINY, f"mesh.data={d}", f"mesh.fsdp={f}", f"mesh.tensor={t}", *overrides])
    rules = make_rules(mesh)
    estimate = estimate_memory(cfg, rules, d * f * t).train_total
    actual = _compiled_bytes(cfg, rules)
    assert 0.8 <= estimate / actual <= 1.2, (estimate, actual)


def _on_device0(tree) -> int:
    return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards if s.device == jax.devices()[0])


def test_exact_parts_match_real_arrays():
    """Parameters, moments and the KV cache: the bytes one device really holds."""
    cfg = load_config(None, [*TINY, "mesh.data=1", "mesh.fsdp=4", "mesh.tensor=2", "sampler.batch_size=16"])
    rules = make_rules((1, 4, 2))
    est = estimate_memory(cfg, rules, 8)
    state = init_state(create_model(cfg.model, rules, 0), cfg.train, 0)

    assert est.params == _on_device0(state.params)
    adam = state.opt_state[1][0]
    assert est.optimizer == _on_device0((adam.mu, adam.nu))
    s = cfg.sampler
    cache = KVCache.init(cfg.model, rules, s.batch_size, max(s.prompt_buckets) + new_token_cap(s.max_new_tokens))
    assert est.kv_cache == _on_device0((cache.k, cache.v, cache.positions, cache.segment_ids))


def test_a_growing_cache_counts_its_last_move():
    """sampler.cache_growth: the whole cache and, while moving into it, the last smaller one."""
    over = [*TINY, "sampler.batch_size=16", "sampler.prompt_buckets=[32]", "sampler.max_new_tokens=128"]
    rules = make_rules((1, 1, 1))
    whole = estimate_memory(load_config(None, over), rules, 8).kv_cache
    grown = estimate_memory(load_config(None, [*over, "sampler.cache_growth=64"]), rules, 8).kv_cache
    assert grown == whole * (160 + 128) // 160  # caches of 64, 128 and 160 slots


def test_generation_on_a_sampler_mesh_is_counted_on_that_mesh():
    """sampler.mesh: the trainer's rows on its own (smaller) mesh, generation's on the sampler's,
    each the bytes one device of that mesh really holds."""
    cfg = load_config(
        None, [*TINY, "mesh.data=1", "mesh.fsdp=2", "sampler.mesh.data=1", "sampler.mesh.fsdp=-1", "sampler.batch_size=16"]
    )
    trainer, generation = make_rules((1, 2, 1)), make_rules((1, 8, 1))
    est = estimate_memory(cfg, trainer, 8)
    assert est.mesh["fsdp"] == 2 and est.generate_mesh["fsdp"] == 8
    model = create_model(cfg.model, trainer, 0)
    assert est.params == _on_device0(nnx.state(model))
    assert est.generate_params == _on_device0(nnx.state(with_rules(model, generation)))
    s = cfg.sampler
    cache = KVCache.init(cfg.model, generation, s.batch_size, max(s.prompt_buckets) + new_token_cap(s.max_new_tokens))
    assert est.kv_cache == _on_device0((cache.k, cache.v, cache.positions, cache.segment_ids))


def test_moments_are_sharded_as_their_parameters():
    cfg = load_config(None, [*TINY, "train.moment_dtype=bfloat16"])
    rules = make_rules((1, 8, 1))
    state = init_state(create_model(cfg.model, rules, 0), cfg.train, 0)
    adam = state.opt_state[1][0]
    for moments in (adam.mu, adam.nu):
        for (path, p), m in zip(jax.tree_util.tree_leaves_with_path(state.params), jax.tree.leaves(moments)):
            assert m.sharding.is_equivalent_to(p.sharding, p.ndim), jax.tree_util.keystr(path)
    embed = state.params["embed"][...]
    assert math.prod(embed.sharding.shard_shape(embed.shape)) * 8 == embed.size  # really split 8 ways


def test_batch_that_does_not_split_over_the_mesh_is_refused():
    cfg = load_config(None, [*TINY, "train.batch_size=4", "mesh.data=8"])
    with pytest.raises(ConfigError, match="do not split evenly"):
        estimate_memory(cfg, make_rules((8, 1, 1)), 8)


def test_info_memory_prints_the_table_for_a_recipe(capsys):
    code = main(
        [
            "info",
            "configs/gsm8k_qwen2.5_1.5b.yaml",
            "model.from_hf=null",
            "model.preset=qwen2.5-1.5b",
            "--memory",
            "--devices",
            "8",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "memory per device on mesh data=1 x fsdp=8 x tensor=1" in out
    for row in ("parameters", "gradients", "optimizer state", "activations", "train step", "KV cache", "generation"):
        assert f" {row} " in out
    assert main(["info", "configs/tiny.yaml", "model.vocab_size=64", "--devices", "0", "--memory"]) == 2
    assert "--devices takes a positive device count" in capsys.readouterr().err


def test_fused_attention_keeps_no_scores_where_it_runs():
    """dot_product attention is cuDNN flash on a GPU (16-bit compute, head dims of 8s up to 256)
    and splash on a TPU (lengths and head dims of 128s): no attention scores among the
    activations there."""

    def activations(platform: str, *overrides: str) -> int:
        cfg = load_config(
            None, [*TINY, "model.attention=dot_product", "train.remat=none", "model.compute_dtype=bfloat16", *overrides]
        )
        return estimate_memory(cfg, make_rules((1, 1, 1)), 1, platform).activations

    scores = activations("cpu", "model.head_dim=128")
    assert activations("gpu", "model.head_dim=128") == activations("tpu", "model.head_dim=128") < scores
    assert activations("tpu", "model.head_dim=96") == activations("cpu", "model.head_dim=96")
    assert activations("gpu", "model.head_dim=96") < activations("cpu", "model.head_dim=96")
    f32 = ("model.head_dim=128", "model.compute_dtype=float32")
    assert activations("gpu", *f32) == activations("cpu", *f32)  # XLA's attention on float32
    assert activations("gpu", "model.head_dim=264") == activations("cpu", "model.head_dim=264")
