"""The pure train step: `train_step(state, batch) -> (state, metrics)`, jitted once with shardings.

Loss is next-token cross-entropy on completion tokens only (batch.weights), summed over the
global batch and divided by its number of completion tokens, so gradient accumulation over
micro-batches (a `lax.scan` inside the step) gives exactly the full-batch gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from starjax.model.transformer import Transformer
from starjax.schema import TrainConfig
from starjax.sharding import AxisRules
from starjax.training import lora
from starjax.training.optimizer import make_optimizer, schedule

ROW_NAMES = ("batch", "length")


@flax.struct.dataclass
class Batch:
    tokens: jax.Array  # [B, L] int32 model inputs
    targets: jax.Array  # [B, L] int32 next token of each input
    positions: jax.Array  # [B, L] int32 position within its segment
    segment_ids: jax.Array  # [B, L] int32, 0 = padding
    weights: jax.Array  # [B, L] float32, 1 where the target is a completion token


@flax.struct.dataclass
class TrainState:
    params: nnx.State
    opt_state: optax.OptState
    step: jax.Array  # [] int32
    rng: jax.Array  # [2] uint32 raw key data (plain arrays checkpoint everywhere)


def init_state(model: Transformer, cfg: TrainConfig, seed: int) -> TrainState:
    """Optimizer moments inherit each parameter's sharding; scalars are replicated on the mesh.

    The parameters are copied: the train step donates the state, and the model (e.g. the STaR
    base model, fine-tuned again every iteration) must survive it.
    """
    if cfg.lora_rank:  # the adapters are all that trains; the model stays the frozen base
        params = lora.init_adapters(nnx.state(model), cfg, seed)
    else:
        params = jax.tree.map(jnp.copy, nnx.state(model))
    init = make_optimizer(cfg).init
    # created sharded: a replicated first copy of the moments would not fit where FSDP is needed
    opt_state = jax.jit(init, out_shardings=moment_shardings(jax.eval_shape(init, params), params, model.rules))(params)
    rng = jax.random.key_data(jax.random.key(seed))
    state = TrainState(params, opt_state, jnp.zeros((), jnp.int32), rng)
    return jax.device_put(state, state_shardings(state, model.rules))


def moment_shardings(opt_state, params: nnx.State, rules: AxisRules):
    """Each optimizer-state leaf sharded as the parameter whose path ends its own (AdamW's
    mu/nu of a weight are laid out as the weight), every other leaf replicated."""
    by_path = {tuple(path): _mesh_sharding(x, rules) for path, x in jax.tree_util.tree_leaves_with_path(params)}

    def pick(path, _):
        for i in range(len(path)):
            if (sharding := by_path.get(tuple(path[i:]))) is not None:
                return sharding
        return rules.sharding(())

    return jax.tree_util.tree_map_with_path(pick, opt_state)


def state_shardings(state: TrainState, rules: AxisRules) -> TrainState:
    """Each leaf's sharding on the rules' mesh: its own where it has one there, else replicated."""
    return jax.tree.map(lambda x: _mesh_sharding(x, rules), state)


def _mesh_sharding(x, rules: AxisRules):
    sharding = getattr(x, "sharding", None)
    return sharding if getattr(sharding, "mesh", None) == rules.mesh else rules.sharding(())


def loss_sums(
    graphdef: nnx.GraphDef, params: nnx.State, batch: Batch, remat: str = "none"
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(sum of weighted token losses, (sum of weights, weighted correct predictions))."""
    logits, _ = nnx.merge(graphdef, params)(batch.tokens, batch.positions, batch.segment_ids, remat=remat)
    # logsumexp - target logit: no [B, L, V] log-probability array is materialised.
    target_logit = jnp.take_along_axis(logits, batch.targets[..., None], axis=-1)[..., 0]
    nll = jax.nn.logsumexp(logits, axis=-1) - target_logit
    correct = (target_logit >= jnp.max(jax.lax.stop_gradient(logits), axis=-1)).astype(jnp.float32)
    w = batch.weights
    return (nll * w).sum(), (w.sum(), (correct * w).sum())


def train_step(
    graphdef: nnx.GraphDef, cfg: TrainConfig, rules: AxisRules, state: TrainState, batch: Batch, base: nnx.State | None = None
) -> tuple[TrainState, dict]:
    """One optimizer step. `base`: the frozen weights when state.params are LoRA adapters."""
    optimizer = make_optimizer(cfg)
    m = cfg.micro_batches

    def split(x: jax.Array) -> jax.Array:
        # Rows j, j+m, j+2m, ... form micro-batch j: every micro-batch keeps the batch sharding.
        x = x.reshape(x.shape[0] // m, m, *x.shape[1:]).swapaxes(0, 1)
        return rules.constrain(x, (None, *ROW_NAMES))

    def loss(p, mb: Batch):
        return loss_sums(graphdef, p if base is None else lora.merge(base, p, cfg), mb, cfg.remat)

    grad_fn = jax.value_and_grad(loss, has_aux=True)

    def accumulate(carry, micro: Batch):
        grads, loss, count, correct = carry
        (micro_loss, (n, c)), g = grad_fn(state.params, micro)
        return (jax.tree.map(jnp.add, grads, g), loss + micro_loss, count + n, correct + c), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    init = (zeros, jnp.float32(0), jnp.float32(0), jnp.float32(0))
    (grads, loss, count, correct), _ = jax.lax.scan(accumulate, init, jax.tree.map(split, batch))
    denom = jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: g / denom, grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss / denom,
        "accuracy": correct / denom,
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": schedule(cfg)(state.step),
        "tokens": count,
    }
    rng = jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step))
    return TrainState(params, opt_state, state.step + 1, rng), metrics


def batch_shardings(rules: AxisRules) -> Batch:
    s = rules.sharding(ROW_NAMES)
    return Batch(s, s, s, s, s)


# (graphdef, key, program) per compiled step: a list, since a GraphDef compares equal to its
# twin from another model of the same structure but holds unhashable configs
_PROGRAMS: list[tuple[nnx.GraphDef, tuple, Callable]] = []
_TRACES = [0]


def train_step_traces() -> int:
    """How many train step programs this process has traced (each trace is one XLA compile)."""
    return _TRACES[0]


def program_config(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with the fields the compiled step does not read set to their defaults.

    Calls that differ only in those (every STaR fine-tune differs in `steps`) share one program.
    `steps` shapes only a cosine schedule; batch_size and seq_len are array shapes, which jit
    keys on by itself.
    """
    d = TrainConfig()
    return dataclasses.replace(
        cfg,
        steps=cfg.steps if cfg.schedule == "cosine" else d.steps,
        batch_size=d.batch_size,
        seq_len=d.seq_len,
        init_from=None,
        checkpoint_every=d.checkpoint_every,
        keep_checkpoints=d.keep_checkpoints,
        eval_every=d.eval_every,
    )


def compile_train_step(
    graphdef: nnx.GraphDef, cfg: TrainConfig, rules: AxisRules, state: TrainState, base: nnx.State | None = None
) -> Callable:
    """`train_step` under jax.jit, called as `step(state, batch)`: explicit in/out shardings, the
    state donated; `base` (LoRA's frozen weights, else None) is an argument of the program
    (never donated, never baked in as a constant).

    One jitted function per (model structure, program config, shardings) for the life of the
    process, so repeated `fit` calls reuse its compiled executables instead of recompiling.
    """
    if bool(cfg.lora_rank) != (base is not None):
        raise ValueError("compile_train_step needs the frozen base weights exactly when train.lora_rank > 0")
    state_sh = state_shardings(state, rules)
    cfg = program_config(cfg)
    leaves, treedef = jax.tree.flatten(state_sh)
    key = (dataclasses.astuple(cfg), rules, treedef, tuple(leaves))
    for seen, seen_key, program in _PROGRAMS:
        if seen_key == key and seen == graphdef:
            return _bound(program, base)

    def traced(s: TrainState, b: Batch, frozen: nnx.State | None) -> tuple[TrainState, dict]:
        _TRACES[0] += 1
        return train_step(graphdef, cfg, rules, s, b, frozen)

    base_sh = None if base is None else jax.tree.map(lambda x: x.sharding, base)
    program = jax.jit(
        traced,
        in_shardings=(state_sh, batch_shardings(rules), base_sh),
        out_shardings=(state_sh, rules.sharding(())),
        donate_argnums=(0,),
    )
    _PROGRAMS.append((graphdef, key, program))
    return _bound(program, base)


def _bound(program: Callable, base: nnx.State | None) -> Callable:
    """`step(state, batch)`; `step.lower(state, batch)` lowers it (e.g. for memory_analysis)."""

    def step(s: TrainState, b: Batch) -> tuple[TrainState, dict]:
        return program(s, b, base)

    step.lower = lambda s, b: program.lower(s, b, base)
    return step
