"""Continuous batching: the compiled programs behind `sampler.engine=continuous`.

Generation state lives on the device in `Slots`, one row per slot, donated from call to call:

- `prefill_prefix`: the prompts' shared prefix (a few-shot block), once per call;
- `run`: one `lax.while_loop` that steps every live slot and, inside the loop, moves finished
  rows to a harvest buffer and refills their slots (`refill`: a group of prompts prefilled
  after the prefix, each repeated num_samples times, first tokens chosen) from the groups the
  host staged for this call. It returns once those are all in the slots, so the host can stage
  the next ones (and show progress) while rows keep their slots: nothing drains between calls.

The shared prefix is stored once (one cache row) and every row attends to it besides its own
cache row, which holds the prompt's left-padded rest in [0, Bs) and the generated tokens after
it; a per-row write index lets rows sit at different steps. A row's t-th token is drawn with fold_in(fold_in(fold_in(seed key, prompt),
sample), t), so what a row generates does not depend on the slot, the batch or the order it
runs in.
"""

from __future__ import annotations

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from starjax.model.kv_cache import KV_NAMES, SLOT_NAMES, KVCache
from starjax.sampling.strategies import SamplingSettings, choose_tokens, is_stop, token_logprob
from starjax.schema import ModelConfig
from starjax.sharding import AxisRules


@flax.struct.dataclass
class Slots:
    cache: KVCache  # index [S]: each row's next cache slot
    tokens: jax.Array  # [S, N] int32 generated so far; pad_id after
    logprobs: jax.Array  # [S, N] float32
    lengths: jax.Array  # [S] int32 generated tokens
    done: jax.Array  # [S] bool: finished, or empty
    positions: jax.Array  # [S] int32 position of the next token to feed
    limits: jax.Array  # [S] int32 the row's cap on new tokens
    keys: jax.Array  # [S, ...] uint32 key data of each row's key

    @classmethod
    def shardings(cls, rules: AxisRules, num_layers: int) -> "Slots":
        rows2, rows = rules.sharding(("batch", None)), rules.sharding(("batch",))
        kv = tuple(rules.sharding(KV_NAMES) for _ in range(num_layers))
        slot = rules.sharding(SLOT_NAMES)
        return cls(KVCache(kv, kv, slot, slot, rows), rows2, rows2, rows, rows, rows, rows, rows2)


def empty_slots(cfg: ModelConfig, rows: int, length: int, max_new_cap: int, pad_id: int, key_shape: tuple[int, ...]) -> Slots:
    """Every slot empty (done, nothing to harvest); traced inside `compile_programs`' init."""
    return Slots(
        cache=KVCache.zeros(cfg, rows, length, jnp.zeros((rows,), jnp.int32)),
        tokens=jnp.full((rows, max_new_cap), pad_id, jnp.int32),
        logprobs=jnp.zeros((rows, max_new_cap), jnp.float32),
        lengths=jnp.zeros((rows,), jnp.int32),
        done=jnp.ones((rows,), bool),
        positions=jnp.zeros((rows,), jnp.int32),
        limits=jnp.zeros((rows,), jnp.int32),
        keys=jnp.zeros((rows, *key_shape), jnp.uint32),
    )


def _step_keys(key_data: jax.Array, steps: jax.Array) -> jax.Array:
    return jax.vmap(jax.random.fold_in)(jax.random.wrap_key_data(key_data), steps)


def prefill_prefix(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array) -> KVCache:
    """The shared prefix's keys and values: tokens [1, Lp], positions 0..Lp-1."""
    model = nnx.merge(graphdef, params)
    _, cache = model(tokens, cache=KVCache.zeros(model.cfg, 1, tokens.shape[1]), last_only=True)
    return cache


def refill(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    slots: Slots,
    prefix: KVCache | None,
    prompts: jax.Array,
    prompt_lengths: jax.Array,
    row_limits: jax.Array,
    prompt_ids: jax.Array,
    targets: jax.Array,
    seed_key: jax.Array,
    settings: SamplingSettings,
    *,
    num_samples: int,
    top_k: int,
    pad_id: int,
) -> Slots:
    """Prefills prompts [G, Bs] (left-padded; length 0 = no prompt; row_limits [G, num_samples]
    each row's cap on new tokens) after `prefix` and writes
    each num_samples times into slots `targets` [G * num_samples] (an index past the last slot
    writes nothing)."""
    model = nnx.merge(graphdef, params)
    cfg = model.cfg
    g, bs = prompts.shape
    lp = 0 if prefix is None else prefix.length
    cache = KVCache.zeros(cfg, g, bs)
    pad = bs - prompt_lengths
    col = jnp.arange(bs, dtype=jnp.int32)
    segments = (col[None, :] >= pad[:, None]).astype(jnp.int32)
    positions = lp + jnp.maximum(col[None, :] - pad[:, None], 0)
    logits, cache = model(prompts, positions, segments, cache, last_only=True, prefix=prefix)

    rep = lambda x: jnp.repeat(x, num_samples, axis=0)  # noqa: E731
    rows = g * num_samples
    last = rep(logits[:, -1])
    per_prompt = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.wrap_key_data(seed_key), prompt_ids)
    row_keys = jax.vmap(lambda k: jax.vmap(jax.random.fold_in, (None, 0))(k, jnp.arange(num_samples)))(per_prompt)
    key_data = jax.random.key_data(row_keys.reshape(rows))
    first = choose_tokens(last, _step_keys(key_data, jnp.zeros((rows,), jnp.int32)), settings, top_k)

    length = slots.cache.length
    tail = length - bs

    def whole_rows(x: jax.Array, axis: int) -> jax.Array:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, tail)
        return jnp.pad(rep(x), widths)

    def scatter(dst: jax.Array, src: jax.Array) -> jax.Array:
        return dst.at[targets].set(src.astype(dst.dtype), mode="drop")

    new_cache = KVCache(
        k=tuple(scatter(d, whole_rows(s, 2)) for d, s in zip(slots.cache.k, cache.k)),
        v=tuple(scatter(d, whole_rows(s, 2)) for d, s in zip(slots.cache.v, cache.v)),
        positions=scatter(slots.cache.positions, whole_rows(cache.positions, 1)),
        segment_ids=scatter(slots.cache.segment_ids, whole_rows(cache.segment_ids, 1)),
        index=scatter(slots.cache.index, jnp.full((rows,), bs, jnp.int32)),
    )
    cap = slots.tokens.shape[1]
    limits = jnp.minimum(jnp.minimum(settings.max_new_tokens, cap), row_limits.reshape(rows))
    return Slots(
        cache=new_cache,
        tokens=scatter(slots.tokens, jnp.full((rows, cap), pad_id, jnp.int32).at[:, 0].set(first)),
        logprobs=scatter(slots.logprobs, jnp.zeros((rows, cap), jnp.float32).at[:, 0].set(token_logprob(last, first))),
        lengths=scatter(slots.lengths, jnp.ones((rows,), jnp.int32)),
        done=scatter(slots.done, is_stop(first, settings.stop_ids) | (limits <= 1)),
        positions=scatter(slots.positions, lp + rep(prompt_lengths)),
        limits=scatter(slots.limits, limits),
        keys=scatter(slots.keys, key_data),
    )


def decode_step(model, fused, slots: Slots, prefix: KVCache | None, settings: SamplingSettings, top_k: int, pad_id: int) -> Slots:
    """One token for every live slot."""
    s = slots
    rows, cap = s.tokens.shape
    fed = jnp.take_along_axis(s.tokens, jnp.maximum(s.lengths - 1, 0)[:, None], axis=1)
    logits, cache = model(fed, s.positions[:, None], jnp.ones((rows, 1), jnp.int32), s.cache, fused=fused, prefix=prefix)
    logits = logits[:, 0]
    new = choose_tokens(logits, _step_keys(s.keys, s.lengths), settings, top_k)
    live = ~s.done
    new = jnp.where(live, new, pad_id)
    row = jnp.arange(rows)
    column = jnp.where(live, s.lengths, cap)  # out of range: a finished row writes nothing
    lengths = s.lengths + live.astype(jnp.int32)
    return s.replace(
        cache=cache,
        tokens=s.tokens.at[row, column].set(new, mode="drop"),
        logprobs=s.logprobs.at[row, column].set(token_logprob(logits, new), mode="drop"),
        lengths=lengths,
        done=s.done | is_stop(new, settings.stop_ids) | (lengths >= s.limits),
        positions=s.positions + 1,
    )


@flax.struct.dataclass
class Harvest:
    """Rows finished during one `run`, at their places in the call's buffer: first one place per
    slot (the rows already in the slots when the call began, by slot), then one per staged row."""

    tokens: jax.Array  # [S + M * G * num_samples, N] int32
    logprobs: jax.Array  # [.., N] float32
    lengths: jax.Array  # [..] int32; 0 = nothing finished there in this call


def run(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    slots: Slots,
    busy: jax.Array,
    prefix: KVCache | None,
    prompts: jax.Array,
    prompt_lengths: jax.Array,
    row_limits: jax.Array,
    prompt_ids: jax.Array,
    staged: jax.Array,
    seed_key: jax.Array,
    settings: SamplingSettings,
    drain: jax.Array,
    *,
    num_samples: int,
    top_k: int,
    pad_id: int,
    fuse_weights: bool,
) -> tuple[Slots, jax.Array, Harvest]:
    """Decodes every live slot and refills free slots inside the loop: each step first moves the
    finished rows to the harvest and, while a group of prompts fits, prefills it into free slots.

    prompts [M, G, Bs] are M staged groups of G prompts (`refill`'s arguments, one group per
    row of M); `staged` of them are real. `busy` [S]: slots holding a row of an earlier call.
    Returns when every staged group is in the slots (or, with `drain`, when every row has
    finished), with the slots, which of them hold a row (its place in the harvest), and the
    harvest."""
    model = nnx.merge(graphdef, params)
    fused = model.fused_weights() if fuse_weights else None
    rows, cap = slots.tokens.shape
    group = prompts.shape[1]
    need = group * num_samples
    places = rows + prompts.shape[0] * need
    owner = jnp.where(busy, jnp.arange(rows, dtype=jnp.int32), -1)  # a row's place in the harvest
    harvest = Harvest(
        jnp.full((places, cap), pad_id, jnp.int32), jnp.zeros((places, cap), jnp.float32), jnp.zeros((places,), jnp.int32)
    )

    def collect(c):
        s, owner, q, h = c
        finished = s.done & (owner >= 0)
        at = jnp.where(finished, owner, places)  # out of range: dropped
        h = Harvest(
            h.tokens.at[at].set(s.tokens, mode="drop"),
            h.logprobs.at[at].set(s.logprobs, mode="drop"),
            h.lengths.at[at].set(s.lengths, mode="drop"),
        )
        return s, jnp.where(finished, -1, owner), q, h

    def fits(c):
        _, owner, q, _ = c
        return (q < staged) & (jnp.sum(owner < 0) >= need)

    def fill(c):
        s, owner, q, h = c
        free_first = jnp.argsort(owner >= 0, stable=True)[:need]
        real = jnp.repeat(prompt_lengths[q] > 0, num_samples)
        targets = jnp.where(real, free_first, rows)  # out of range: written nowhere
        s = refill(
            graphdef, params, s, prefix, prompts[q], prompt_lengths[q], row_limits[q], prompt_ids[q], targets, seed_key,
            settings, num_samples=num_samples, top_k=top_k, pad_id=pad_id,
        )  # fmt: skip
        placed = rows + q * need + jnp.arange(need, dtype=jnp.int32)
        return s, owner.at[targets].set(placed, mode="drop"), q + 1, h

    def body(c):
        s, owner, q, h = jax.lax.while_loop(fits, fill, collect(c))
        return decode_step(model, fused, s, prefix, settings, top_k, pad_id), owner, q, h

    def cond(c):
        _, owner, q, _ = c
        return (q < staged) | (drain & jnp.any(owner >= 0))

    s, owner, _, h = collect(jax.lax.while_loop(cond, body, (slots, owner, jnp.int32(0), harvest)))
    return s, owner, h


def compile_programs(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    rules: AxisRules,
    model_cfg: ModelConfig,
    *,
    num_samples: int,
    top_k: int,
    pad_id: int,
    fuse_weights: bool,
    on_compile: Callable[[], None],
) -> dict[str, Callable]:
    """The jitted programs, with explicit shardings; the slot state is donated through them."""
    replicated = rules.sharding(())
    slots_sh = Slots.shardings(rules, model_cfg.num_layers)
    param_sh = nnx.get_named_sharding(params, rules.mesh)
    settings_sh = SamplingSettings(replicated, replicated, replicated, replicated)
    key_shape = jax.random.key_data(jax.random.key(0)).shape

    def counted(fn: Callable) -> Callable:
        def traced(*args):
            on_compile()
            return fn(*args)

        return traced

    init = jax.jit(
        lambda rows, length, cap: empty_slots(model_cfg, rows, length, cap, pad_id, key_shape),
        static_argnums=(0, 1, 2),
        out_shardings=slots_sh,
    )
    prefix = jax.jit(counted(lambda p, t: prefill_prefix(graphdef, p, t)), out_shardings=replicated)
    rows = rules.sharding(("batch",))
    step = jax.jit(
        counted(
            lambda p, s, busy, pre, *rest: run(
                graphdef,
                p,
                s,
                busy,
                pre,
                *rest,
                num_samples=num_samples,
                top_k=top_k,
                pad_id=pad_id,
                fuse_weights=fuse_weights,
            )
        ),
        in_shardings=(param_sh, slots_sh, rows, *[replicated] * 7, settings_sh, replicated),
        out_shardings=(slots_sh, rows, Harvest(replicated, replicated, replicated)),
        donate_argnums=(1,),
    )
    return {"init": init, "prefix": prefix, "run": step}
