"""Model correctness: cached == full, packed == unpacked, GQA grouping, RoPE, causality, dtypes."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_rules
from flax import nnx

from starjax.model import layers
from starjax.model.kv_cache import KVCache
from starjax.model.transformer import Transformer, count_params, create_model

TOL = dict(rtol=1e-5, atol=1e-5)


def forward(model, tokens, positions=None, segment_ids=None, cache=None):
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))
    return fn(state, tokens, positions, segment_ids, cache)


def random_tokens(shape, vocab, seed=0):
    return jnp.asarray(np.random.RandomState(seed).randint(0, vocab, shape), jnp.int32)


@pytest.fixture(scope="module")
def rules():
    return make_rules()


def test_forward_shape_and_param_count(model_cfg, rules):
    model = create_model(model_cfg, rules)
    logits, cache = forward(model, random_tokens((3, 7), model_cfg.vocab_size))
    assert logits.shape == (3, 7, model_cfg.vocab_size) and logits.dtype == jnp.float32
    assert cache is None
    assert bool(jnp.isfinite(logits).all())
    e, m, v, h, k, d, L = 64, 128, 64, 4, 2, 16, 2
    per_block = e * h * d * 2 + e * k * d * 2 + 3 * e * m + 2 * e
    assert count_params(model) == v * e + L * per_block + e


@pytest.mark.parametrize("overrides", [{}, {"scan_layers": True}, {"param_dtype": "bfloat16", "tie_embeddings": False}])
def test_one_device_init_op_by_op_equals_the_compiled_sharded_one(model_cfg, overrides):
    cfg = dataclasses.replace(model_cfg, **overrides)
    one = nnx.state(create_model(cfg, make_rules(), seed=3))
    sharded = nnx.state(create_model(cfg, make_rules((2, 2, 2)), seed=3))
    assert jax.tree.structure(one) == jax.tree.structure(sharded)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(sharded)):
        assert a.dtype == b.dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_vocab_size_required(model_cfg, rules):
    with pytest.raises(ValueError, match="vocab_size is unset"):
        Transformer(dataclasses.replace(model_cfg, vocab_size=None), rules, nnx.Rngs(0))


def test_causal_future_tokens_do_not_change_past_logits(model_cfg, rules):
    model = create_model(model_cfg, rules)
    a = random_tokens((2, 10), model_cfg.vocab_size, seed=1)
    b = a.at[:, 6:].set((a[:, 6:] + 1) % model_cfg.vocab_size)
    la, _ = forward(model, a)
    lb, _ = forward(model, b)
    np.testing.assert_allclose(la[:, :6], lb[:, :6], **TOL)
    assert np.abs(np.asarray(la[:, 6:] - lb[:, 6:])).max() > 1e-3


def test_rope_depends_only_on_relative_position(model_cfg, rules):
    model = create_model(model_cfg, rules)
    tokens = random_tokens((2, 9), model_cfg.vocab_size, seed=2)
    pos = jnp.broadcast_to(jnp.arange(9), (2, 9))
    base, _ = forward(model, tokens, pos)
    shifted, _ = forward(model, tokens, pos + 37)
    np.testing.assert_allclose(base, shifted, rtol=1e-4, atol=1e-4)
    theta_cfg = dataclasses.replace(model_cfg, rope_theta=500.0)
    other, _ = forward(create_model(theta_cfg, rules), tokens, pos)
    assert np.abs(np.asarray(other - base)).max() > 1e-4  # theta is really used


def test_rotary_tables_are_evaluated_once_per_step(model_cfg, rules):
    """Unless sin and cos are kept one buffer, XLA fuses them into each consumer and evaluates them
    again per head group, layer and backward product (16 times each here)."""
    graphdef, params = nnx.split(create_model(model_cfg, rules))
    tokens = random_tokens((2, 9), model_cfg.vocab_size, seed=2)
    grad = jax.jit(jax.grad(lambda p: nnx.merge(graphdef, p)(tokens)[0].sum()))
    program = grad.lower(params).compile().as_text()
    assert model_cfg.num_layers > 1
    assert len(re.findall(r"\bsine\(", program)) == 1 and len(re.findall(r"\bcosine\(", program)) == 1


def test_packed_equals_unpacked(model_cfg, rules):
    model = create_model(model_cfg, rules)
    v = model_cfg.vocab_size
    a, b = random_tokens((1, 5), v, seed=3), random_tokens((1, 4), v, seed=4)
    la, _ = forward(model, a)
    lb, _ = forward(model, b)
    packed = jnp.concatenate([a, b, jnp.zeros((1, 3), jnp.int32)], axis=1)  # 3 pad slots
    positions = jnp.asarray([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 0, 0]])
    segments = jnp.asarray([[1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0]])
    lp, _ = forward(model, packed, positions, segments)
    np.testing.assert_allclose(lp[:, :5], la, **TOL)
    np.testing.assert_allclose(lp[:, 5:9], lb, **TOL)
    assert bool(jnp.isfinite(lp).all())  # padding rows attend to nothing, yet stay finite


def test_cached_decode_equals_full_forward(model_cfg, rules):
    model = create_model(model_cfg, rules)
    tokens = random_tokens((2, 12), model_cfg.vocab_size, seed=5)
    full, _ = forward(model, tokens)
    cache = KVCache.init(model_cfg, rules, batch=2, length=16)
    pos = jnp.broadcast_to(jnp.arange(12), (2, 12))
    prefill, cache = forward(model, tokens[:, :7], pos[:, :7], None, cache)
    steps = [prefill]
    for i in range(7, 12):
        logits, cache = forward(model, tokens[:, i : i + 1], pos[:, i : i + 1], None, cache)
        steps.append(logits)
    assert int(cache.index) == 12
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, **TOL)


def test_left_padded_cache_matches_each_prompt_alone(model_cfg, rules):
    """Mixed-length prompts, left padded, with per-row positions: each row as if alone."""
    model = create_model(model_cfg, rules)
    v = model_cfg.vocab_size
    prompts = [random_tokens((1, n), v, seed=10 + n)[0] for n in (3, 6)]
    width, extra = 6, 3
    rows, pos, seg = [], [], []
    for p in prompts:
        pad = width - len(p)
        rows.append(jnp.concatenate([jnp.zeros(pad, jnp.int32), p]))
        pos.append(jnp.concatenate([jnp.zeros(pad, jnp.int32), jnp.arange(len(p))]))
        seg.append(jnp.concatenate([jnp.zeros(pad, jnp.int32), jnp.ones(len(p), jnp.int32)]))
    rows, pos, seg = map(jnp.stack, (rows, pos, seg))
    cont = random_tokens((2, extra), v, seed=99)
    cache = KVCache.init(model_cfg, rules, batch=2, length=width + extra)
    prefill, cache = forward(model, rows, pos, seg, cache)
    decoded = []
    next_pos = pos[:, -1:] + 1
    for i in range(extra):
        logits, cache = forward(model, cont[:, i : i + 1], next_pos + i, jnp.ones((2, 1), jnp.int32), cache)
        decoded.append(logits[:, 0])
    for r, p in enumerate(prompts):
        alone, _ = forward(model, jnp.concatenate([p, cont[r]])[None])
        np.testing.assert_allclose(prefill[r, width - len(p) :], alone[0, : len(p)], **TOL)
        np.testing.assert_allclose(jnp.stack([d[r] for d in decoded]), alone[0, len(p) :], **TOL)


@pytest.mark.parametrize(
    "bias, out_major, tie", [(False, False, True), (True, False, True), (True, True, True), (False, True, False)]
)
def test_fused_inference_layout_equals_stored_layout(model_cfg, rules, bias, out_major, tie, monkeypatch):
    """Decoding's fused q/k/v and gate/up products, and its out-major weights (forced here for
    every weight; by default only large ones on the CPU), give the logits of the stored ones."""
    if out_major:
        monkeypatch.setattr(layers, "OUT_MAJOR_MIN_SIZE", 0)
    cfg = dataclasses.replace(model_cfg, qkv_bias=bias, tie_embeddings=tie)
    model = create_model(cfg, rules, seed=4)
    fused = model.fused_weights()
    head = fused.head
    leaves = jax.tree.leaves((fused.attention, fused.mlp), is_leaf=lambda x: isinstance(x, layers.DecodeWeight))
    weights = [w for w in leaves if isinstance(w, layers.DecodeWeight)]
    assert len(weights) == 4 * cfg.num_layers and {w.out_major for w in weights} == {out_major}
    assert (head is not None) == out_major
    if bias:  # nonzero biases, so a misplaced one shows
        for block in model.blocks:
            for name in ("q_bias", "k_bias", "v_bias"):
                var = getattr(block.attn, name)
                var[...] = random_tokens(var.shape, 7, seed=len(name)).astype(jnp.float32) / 7
    tokens = random_tokens((2, 9), cfg.vocab_size, seed=8)
    graphdef, state = nnx.split(model)
    fused_fn = jax.jit(lambda s, t: (lambda m: m(t, fused=m.fused_weights()))(nnx.merge(graphdef, s)))
    np.testing.assert_allclose(fused_fn(state, tokens)[0], forward(model, tokens)[0], **TOL)


def test_gqa_equals_multi_head_attention_with_repeated_kv(model_cfg, rules):
    """Query head h reads KV head h // groups: same as MHA whose K/V heads are repeated."""
    gqa = create_model(model_cfg, rules, seed=1)
    mha_cfg = dataclasses.replace(model_cfg, num_kv_heads=model_cfg.num_heads)
    mha = create_model(mha_cfg, rules, seed=2)
    groups = model_cfg.num_heads // model_cfg.num_kv_heads
    state = nnx.state(gqa)
    mha_state = nnx.state(mha)
    flat = dict(nnx.to_flat_state(state))
    for path, var in nnx.to_flat_state(mha_state):
        src = flat[path][...]
        if path[-1] in ("k", "v"):
            src = jnp.repeat(src, groups, axis=1)
        var[...] = src
    nnx.update(mha, mha_state)
    tokens = random_tokens((2, 8), model_cfg.vocab_size, seed=6)
    np.testing.assert_allclose(forward(gqa, tokens)[0], forward(mha, tokens)[0], **TOL)


@pytest.mark.parametrize("tie, bias", [(False, True), (True, False)])
def test_embedding_tying_and_qkv_bias(model_cfg, rules, tie, bias):
    cfg = dataclasses.replace(model_cfg, tie_embeddings=tie, qkv_bias=bias)
    model = create_model(cfg, rules)
    assert (model.lm_head is None) == tie
    assert (model.blocks[0].attn.q_bias is not None) == bias
    if bias:  # the bias is really applied
        tokens = random_tokens((1, 5), cfg.vocab_size)
        before, _ = forward(model, tokens)
        model.blocks[0].attn.k_bias[...] = jnp.ones_like(model.blocks[0].attn.k_bias[...])
        after, _ = forward(model, tokens)
        assert np.abs(np.asarray(after - before)).max() > 1e-4


def test_dtypes(model_cfg, rules):
    tokens = random_tokens((2, 8), model_cfg.vocab_size, seed=7)
    ref, _ = forward(create_model(model_cfg, rules), tokens)
    mixed_cfg = dataclasses.replace(model_cfg, compute_dtype="bfloat16")
    mixed = create_model(mixed_cfg, rules)
    assert mixed.embed[...].dtype == jnp.float32  # float32 params, bfloat16 compute
    out, _ = forward(mixed, tokens)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, atol=5e-2)
    assert np.abs(np.asarray(out - ref)).max() > 0  # bfloat16 really used
    bf16 = create_model(dataclasses.replace(mixed_cfg, param_dtype="bfloat16"), rules)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(nnx.state(bf16, nnx.Param)))
    cache = KVCache.init(mixed_cfg, rules, batch=2, length=8)
    assert cache.k[0].dtype == jnp.bfloat16


def test_dot_product_attention_asks_a_gpu_for_cudnn_where_it_takes_the_sizes(monkeypatch):
    """jax.nn.dot_product_attention runs XLA's attention unless told `implementation="cudnn"`
    (an H200 ran out of memory on its float32 scores): training on a GPU asks for cuDNN with
    16-bit q/k/v and head dims of 8s up to 256, decoding with a cache and other sizes do not,
    and a cuDNN that refuses at trace time falls back to XLA's with a warning."""
    real, asked = jax.nn.dot_product_attention, []

    def recorded(*args, implementation=None, **kwargs):
        asked.append(implementation)
        if implementation == "cudnn" and refuse:
            raise ValueError("cuDNN too old")
        return real(*args, **{k: v for k, v in kwargs.items() if k != "is_causal"})  # the mask is causal

    monkeypatch.setattr(layers, "on_gpu", lambda: True)
    monkeypatch.setattr(jax.nn, "dot_product_attention", recorded)
    refuse = False

    def attend(dtype, d=16, causal=True):
        keys = jax.random.split(jax.random.key(0), 3)
        q = jax.random.normal(keys[0], (2, 4, 6, d), dtype)
        k, v = (jax.random.normal(x, (2, 2, 6, d), dtype) for x in keys[1:])
        mask = jnp.broadcast_to(jnp.tril(jnp.ones((6, 6), bool)), (2, 6, 6))
        return layers.dot_product_attention(q, k, v, mask, causal)

    expected = attend(jnp.bfloat16)
    attend(jnp.bfloat16, causal=False)
    attend(jnp.float32)
    attend(jnp.bfloat16, d=12)
    attend(jnp.bfloat16, d=256)
    attend(jnp.bfloat16, d=264)
    assert asked == ["cudnn", None, None, None, "cudnn", None]
    refuse = True
    with pytest.warns(UserWarning, match="cuDNN attention unavailable"):
        fallback = attend(jnp.bfloat16)
    assert asked[6:] == ["cudnn", None]
    np.testing.assert_array_equal(fallback, expected)


def test_dot_product_attention_equals_the_einsum_path(model_cfg, rules):
    """model.attention=dot_product (jax.nn.dot_product_attention: cuDNN flash on GPU, XLA here)
    computes what the einsum path does: packed rows with padding, then a left-padded cached decode."""
    einsum = create_model(model_cfg, rules, seed=7)
    fused = create_model(dataclasses.replace(model_cfg, attention="dot_product"), rules, seed=7)
    tokens = random_tokens((2, 12), model_cfg.vocab_size, seed=8)
    positions = jnp.asarray([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 0, 0]] * 2)
    segments = jnp.asarray([[1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0]] * 2)
    a, _ = forward(einsum, tokens, positions, segments)
    b, _ = forward(fused, tokens, positions, segments)
    assert bool(jnp.isfinite(b).all())  # padding attends to nothing, yet stays finite
    np.testing.assert_allclose(b, a, **TOL)
    seg = jnp.asarray([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    pos = jnp.maximum(jnp.cumsum(seg, axis=1) - 1, 0)
    outs = []
    for model in (einsum, fused):
        cache = KVCache.init(model_cfg, rules, batch=2, length=9)
        prefill, cache = forward(model, tokens[:, :6], pos, seg, cache)
        steps = [prefill[:, -1]]
        for i in range(3):
            logits, cache = forward(model, tokens[:, 6 + i : 7 + i], pos[:, -1:] + 1 + i, jnp.ones((2, 1), jnp.int32), cache)
            steps.append(logits[:, 0])
        outs.append(jnp.stack(steps, axis=1))
    np.testing.assert_allclose(outs[1], outs[0], **TOL)
