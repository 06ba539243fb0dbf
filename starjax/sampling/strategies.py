"""Choosing the next token: greedy, temperature, top-k, top-p (nucleus).

Settings that users change between calls are traced arrays (`SamplingSettings`), so changing
them never recompiles. Only top-k is static: `lax.top_k` needs a Python int.
"""

from __future__ import annotations

from typing import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from starjax.schema import MAX_STOP_IDS, SamplerConfig
from starjax.validation import validate_sampler

NO_STOP = -1  # filler for unused stop-id slots


@flax.struct.dataclass
class SamplingSettings:
    temperature: jax.Array  # [] float32, 0 = greedy
    top_p: jax.Array  # [] float32 in (0, 1]
    max_new_tokens: jax.Array  # [] int32, <= the compiled buffer size
    stop_ids: jax.Array  # [MAX_STOP_IDS] int32, NO_STOP-padded

    @classmethod
    def create(cls, cfg: SamplerConfig, eos_id: int, extra_stop_ids: Sequence[int] = ()) -> "SamplingSettings":
        """`extra_stop_ids`: the tokenizer's own further end ids (a checkpoint's list of eos ids)."""
        validate_sampler(cfg)
        stops = np.full((MAX_STOP_IDS,), NO_STOP, np.int32)
        ids = list(dict.fromkeys([eos_id, *extra_stop_ids, *cfg.stop_ids]))[:MAX_STOP_IDS]
        stops[: len(ids)] = ids
        return cls(
            temperature=np.float32(cfg.temperature),
            top_p=np.float32(cfg.top_p),
            max_new_tokens=np.int32(cfg.max_new_tokens),
            stop_ids=stops,
        )


def token_logprob(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """log softmax(logits)[token] per row: the model's own log-probability of each chosen token."""
    return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), tokens[:, None], axis=-1)[:, 0]


def is_stop(tokens: jax.Array, stop_ids: jax.Array) -> jax.Array:
    return (tokens[..., None] == stop_ids).any(-1)


def _nucleus(logits: jax.Array, top_p: jax.Array) -> jax.Array:
    """Masks all but the smallest set of highest-probability tokens whose mass reaches top_p."""
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep = mass_before < top_p  # the top token always has mass_before 0
    threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits >= threshold, logits, -jnp.inf)


SAMPLE_BLOCK = 128


def _uniform(key: jax.Array, rows: int) -> jax.Array:
    """[rows, 1] uniforms: from one key for the batch, or from a [rows] array of keys, one each
    (a row's draw then depends on its own key only, not on the batch it sits in)."""
    if key.ndim == 0:
        return jax.random.uniform(key, (rows, 1), jnp.float32)
    return jax.vmap(lambda k: jax.random.uniform(k, (1,), jnp.float32))(key)


def sample_categorical(key: jax.Array, logits: jax.Array) -> jax.Array:
    """Exact draw from softmax(logits) per row [B, V] by inverting the CDF with one uniform per row.

    `jax.random.categorical` draws B x V Gumbel variates per step, which on CPU costs more than a
    small model's forward pass. Here a two-level search (block masses, then one block) keeps the
    work at O(V) additions and the cumulative sums short.
    """
    b, v = logits.shape
    blocks = -(-v // SAMPLE_BLOCK)
    logits = jnp.pad(logits, ((0, 0), (0, blocks * SAMPLE_BLOCK - v)), constant_values=-jnp.inf)
    weights = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True)).reshape(b, blocks, SAMPLE_BLOCK)
    block_mass = weights.sum(-1)  # [B, blocks]
    block_cdf = jnp.cumsum(block_mass, axis=-1)
    u = _uniform(key, b) * block_cdf[:, -1:]
    # Rounding can push a draw past the last token with weight: clamp onto it (block, then offset).
    last_block = blocks - 1 - jnp.argmax(block_mass[:, ::-1] > 0, axis=-1)
    block = jnp.minimum(jnp.sum(block_cdf <= u, axis=-1), last_block)
    before = jnp.where(block > 0, jnp.take_along_axis(block_cdf, jnp.maximum(block - 1, 0)[:, None], axis=1)[:, 0], 0.0)
    inner = jnp.take_along_axis(weights, block[:, None, None], axis=1)[:, 0]  # [B, SAMPLE_BLOCK]
    inner_cdf = jnp.cumsum(inner, axis=-1)
    offset = jnp.sum(inner_cdf <= (u[:, 0] - before)[:, None], axis=-1)
    last_nonzero = SAMPLE_BLOCK - 1 - jnp.argmax(inner[:, ::-1] > 0, axis=-1)
    offset = jnp.minimum(offset, last_nonzero)
    return block * SAMPLE_BLOCK + offset


def choose_tokens(logits: jax.Array, key: jax.Array, settings: SamplingSettings, top_k: int) -> jax.Array:
    """Next token for each row of float32 `logits` [B, V]; `key` is one key or [B] keys, one per row."""

    def sample(logits: jax.Array) -> jax.Array:
        scaled = logits / settings.temperature
        if top_k:
            kth = jax.lax.top_k(scaled, top_k)[0][:, -1:]
            scaled = jnp.where(scaled >= kth, scaled, -jnp.inf)
        # The sort behind top-p costs a full-vocabulary sort per step: only pay it when asked.
        scaled = jax.lax.cond(settings.top_p < 1.0, _nucleus, lambda s, _: s, scaled, settings.top_p)
        return sample_categorical(key, scaled)

    greedy = lambda logits: jnp.argmax(logits, axis=-1)  # noqa: E731
    return jax.lax.cond(settings.temperature > 0, sample, greedy, logits).astype(jnp.int32)
