"""model.attention=dot_product runs Pallas splash attention where it can (a TPU, no KV cache,
lengths and head dims of 128s): here the same kernel in Pallas' interpreter, against the einsum
path, forward and gradients, on one device and sharded; elsewhere it falls back."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_rules
from flax import nnx

from starjax.config import load_config
from starjax.model import splash
from starjax.model.transformer import create_model

MODEL = [
    "model.vocab_size=64",
    "model.num_layers=2",
    "model.d_model=128",
    "model.head_dim=128",
    "model.num_heads=4",
    "model.num_kv_heads=2",
    "model.mlp_dim=128",
]
T = 128


def rows(batch: int):
    """Two packed examples and padding per row (positions restart per example)."""
    lengths = [(70, 40), (50, 60), (128, 0), (30, 30)]
    segments, positions = [], []
    for first, second in lengths[:batch]:
        pad = T - first - second
        segments.append([1] * first + [2] * second + [0] * pad)
        positions.append(list(range(first)) + list(range(second)) + [0] * pad)
    tokens = jax.random.randint(jax.random.key(3), (batch, T), 3, 64)
    return tokens, jnp.asarray(positions), jnp.asarray(segments)


def pair(mesh, *overrides):
    cfg = load_config(None, [*MODEL, *overrides]).model
    rules = make_rules(mesh)
    return create_model(cfg, rules, 5), create_model(dataclasses.replace(cfg, attention="dot_product"), rules, 5)


def loss(model, tokens, positions, segments):
    logits, _ = model(tokens, positions, segments)
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp[:, :-1], tokens[:, 1:, None], axis=-1)[..., 0]
    return -(picked * (segments[:, 1:] != 0)).sum()


@pytest.mark.parametrize("mesh, overrides", [((1, 1, 1), []), ((2, 1, 2), []), ((1, 1, 1), ["model.scan_layers=true"])])
def test_splash_equals_the_einsum_path_forward_and_backward(monkeypatch, mesh, overrides):
    monkeypatch.setattr(splash, "MODE", "interpret")
    einsum, fused = pair(mesh, *overrides)
    tokens, positions, segments = rows(4 if mesh[0] > 1 else 2)
    assert "pallas_call" in str(jax.make_jaxpr(lambda t: fused(t, positions, segments)[0])(tokens))
    real = np.asarray(segments) != 0  # padding rows differ by design (splash.py)
    a, _ = einsum(tokens, positions, segments)
    b, _ = fused(tokens, positions, segments)
    np.testing.assert_allclose(np.asarray(b)[real], np.asarray(a)[real], atol=2e-5, rtol=2e-5)
    grads = [nnx.grad(loss)(m, tokens, positions, segments) for m in (einsum, fused)]
    for x, y in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=5e-5, rtol=5e-4)


def test_without_a_tpu_or_with_other_sizes_it_falls_back():
    _, fused = pair((1, 1, 1))
    tokens, positions, segments = rows(2)
    assert splash.MODE == "auto" and not splash.usable(T, 128)  # this CPU
    assert "pallas_call" not in str(jax.make_jaxpr(lambda t: fused(t, positions, segments)[0])(tokens))
    splash_sizes = [(T, 128), (256, 256)]
    assert all(splash.usable(t, d) == (jax.default_backend() == "tpu") for t, d in splash_sizes)
    assert not any(splash.usable(t, d) for t, d in [(100, 128), (T, 64)])
