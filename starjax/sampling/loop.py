"""Compiled generation: one prefill pass, then decoding inside a single `lax.while_loop`.

`generate` is a pure function of (params, cache, prompts, prompt lengths, key, settings).
Prompts arrive left-padded to a bucket length; row r's real tokens sit at the end and get
positions 0..len-1, padding gets segment 0 and is never attended to. With num_samples > 1
each prompt is prefilled once and its cache rows are repeated, so samples share the prefill.
With `cache_growth`, decoding starts in a smaller cache and moves to larger ones as it fills.
"""

from __future__ import annotations

import enum
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from starjax.model.kv_cache import KVCache
from starjax.sampling.strategies import SamplingSettings, choose_tokens, is_stop, token_logprob
from starjax.sharding import AxisRules


class Finish(enum.IntEnum):
    NONE = 0  # a padding row: nothing was generated
    STOP = 1  # ended with eos or a stop id (included in tokens and length)
    LENGTH = 2  # reached max_new_tokens


@flax.struct.dataclass
class Generation:
    tokens: jax.Array  # [R, N] int32; pad_id after a row's end
    logprobs: jax.Array  # [R, N] float32 log-probability of each token under the model (temperature 1); 0 after the end
    lengths: jax.Array  # [R] int32 generated tokens, a stop token included
    finish: jax.Array  # [R] int32 Finish


@flax.struct.dataclass
class _Loop:
    step: jax.Array
    tokens: jax.Array
    logprobs: jax.Array
    lengths: jax.Array
    done: jax.Array
    positions: jax.Array  # [R] position of the next token to feed
    cache: KVCache
    key: jax.Array


def generate(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    cache: KVCache,
    prompts: jax.Array,
    prompt_lengths: jax.Array,
    row_limits: jax.Array,
    key: jax.Array,
    settings: SamplingSettings,
    *,
    max_new_cap: int,
    num_samples: int,
    top_k: int,
    pad_id: int,
    fuse_weights: bool = True,
    cache_growth: int = 0,
) -> tuple[Generation, KVCache]:
    """prompts [B, P] left-padded; cache has B * num_samples rows and >= P + max_new_cap slots;
    row_limits [B, num_samples]: each row's own cap on new tokens (besides settings.max_new_tokens).
    cache_growth: `growth_sizes`; the returned cache is always `cache`'s buffer."""
    model = nnx.merge(graphdef, params)
    rules: AxisRules = model.rules
    b, p = prompts.shape
    rows = b * num_samples
    pad = p - prompt_lengths
    slot = jnp.arange(p, dtype=jnp.int32)
    segments = (slot[None, :] >= pad[:, None]).astype(jnp.int32)
    positions = jnp.maximum(slot[None, :] - pad[:, None], 0)

    fused = model.fused_weights() if fuse_weights else None  # once per call; every decode step reads it
    prefill_cache = KVCache.init(model.cfg, rules, b, p)
    # The prompt pass reads the stored weights: the decode layout is chosen for a decode step's few rows.
    logits, prefill_cache = model(prompts, positions, segments, prefill_cache, last_only=True)
    last = logits[:, -1]
    sizes = growth_sizes(p, cache.length, cache_growth)
    full = cache

    def sized(size: int) -> KVCache:
        # the last is the donated buffer, so the program's cache output reuses it
        return full if size == full.length else KVCache.zeros(model.cfg, rows, size)

    cache = sized(sizes[0]).fill_from(prefill_cache, num_samples)
    lengths = jnp.repeat(prompt_lengths, num_samples)
    last = jnp.repeat(last, num_samples, axis=0)

    limit = jnp.minimum(jnp.minimum(settings.max_new_tokens, max_new_cap), row_limits.reshape(rows))
    key, sub = jax.random.split(key)
    first = jnp.where(lengths > 0, choose_tokens(last, sub, settings, top_k), pad_id)
    done = is_stop(first, settings.stop_ids) | (lengths == 0) | (limit <= 1)
    batch_spec = ("batch", None)
    state = _Loop(
        step=jnp.int32(1),
        tokens=rules.constrain(jnp.full((rows, max_new_cap), pad_id, jnp.int32).at[:, 0].set(first), batch_spec),
        logprobs=rules.constrain(
            jnp.zeros((rows, max_new_cap), jnp.float32).at[:, 0].set(jnp.where(lengths > 0, token_logprob(last, first), 0.0)),
            batch_spec,
        ),
        lengths=jnp.where(lengths > 0, 1, 0).astype(jnp.int32),
        done=done,
        positions=lengths,
        cache=cache,
        key=key,
    )

    def cond(s: _Loop) -> jax.Array:
        return ~jnp.all(s.done) & (s.cache.index < s.cache.length)

    def body(s: _Loop) -> _Loop:
        fed = s.tokens[:, s.step - 1]
        logits, cache = model(fed[:, None], s.positions[:, None], jnp.ones((rows, 1), jnp.int32), s.cache, fused=fused)
        logits = logits[:, 0]
        key, sub = jax.random.split(s.key)
        new = choose_tokens(logits, sub, settings, top_k)
        live = ~s.done
        new = jnp.where(live, new, pad_id)
        logprob = jnp.where(live, token_logprob(logits, new), 0.0)
        return _Loop(
            step=s.step + 1,
            tokens=jax.lax.dynamic_update_slice(s.tokens, new[:, None], (0, s.step)),
            logprobs=jax.lax.dynamic_update_slice(s.logprobs, logprob[:, None], (0, s.step)),
            lengths=s.lengths + live.astype(jnp.int32),
            done=s.done | is_stop(new, settings.stop_ids) | (s.step + 1 >= limit),
            positions=s.positions + 1,
            cache=cache,
            key=key,
        )

    state = jax.lax.while_loop(cond, body, state)
    for size in sizes[1:]:  # each a loop of its own: the cache's length is a static shape
        state = jax.lax.while_loop(cond, body, state.replace(cache=sized(size).fill_from(state.cache, 1)))
    last_token = jnp.take_along_axis(state.tokens, jnp.maximum(state.lengths - 1, 0)[:, None], axis=1)[:, 0]
    finish = jnp.where(
        state.lengths == 0,
        Finish.NONE,
        jnp.where(is_stop(last_token, settings.stop_ids), Finish.STOP, Finish.LENGTH),
    ).astype(jnp.int32)
    return Generation(state.tokens, state.logprobs, state.lengths, finish), state.cache


def growth_sizes(prompt_len: int, length: int, growth: int) -> list[int]:
    """The cache lengths a decode passes through: the multiples of `growth` (0 = none) that hold
    the prompt and at least one new token, then `length`."""
    if growth <= 0:
        return [length]
    return list(range((prompt_len // growth + 1) * growth, length, growth)) + [length]


def compile_generate(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    rules: AxisRules,
    num_layers: int,
    *,
    max_new_cap: int,
    num_samples: int,
    top_k: int,
    pad_id: int,
    on_compile: Callable[[], None],
    fuse_weights: bool = True,
    cache_growth: int = 0,
) -> Callable:
    """`generate` under jax.jit with explicit shardings and a donated cache.

    `on_compile` runs each time JAX traces (i.e. compiles) a new shape bucket.
    """

    def traced(params, cache, prompts, prompt_lengths, row_limits, key, settings):
        on_compile()
        return generate(
            graphdef,
            params,
            cache,
            prompts,
            prompt_lengths,
            row_limits,
            key,
            settings,
            max_new_cap=max_new_cap,
            num_samples=num_samples,
            top_k=top_k,
            pad_id=pad_id,
            fuse_weights=fuse_weights,
            cache_growth=cache_growth,
        )

    replicated = rules.sharding(())
    batch = rules.sharding(("batch",))
    batch2 = rules.sharding(("batch", None))
    cache_sh = KVCache.shardings(rules, num_layers)
    param_sh = nnx.get_named_sharding(params, rules.mesh)
    settings_sh = SamplingSettings(replicated, replicated, replicated, replicated)
    return jax.jit(
        traced,
        in_shardings=(param_sh, cache_sh, batch2, batch, batch2, replicated, settings_sh),
        out_shardings=(Generation(batch2, batch2, batch, batch), cache_sh),
        donate_argnums=(1,),
    )
