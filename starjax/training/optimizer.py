"""AdamW with warmup then constant or cosine learning rate, global-norm clipping, and weight decay
on matrices only (norm scales and biases are not decayed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from starjax.schema import TrainConfig


def schedule(cfg: TrainConfig) -> optax.Schedule:
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1))
    if cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(cfg.learning_rate, max(cfg.steps - cfg.warmup_steps, 1), alpha=0.1)
    else:
        after = optax.constant_schedule(cfg.learning_rate)
    return optax.join_schedules([warmup, after], [cfg.warmup_steps])


def decay_mask(params: nnx.State) -> nnx.State:
    """True for parameters that get weight decay: everything but norm scales and biases."""

    def decays(path, _) -> bool:
        names = [str(getattr(p, "key", p)) for p in path]
        return not any("norm" in n or n.endswith("bias") for n in names)

    return jax.tree.map_with_path(decays, params)


def stored_as(inner: optax.GradientTransformation, dtype: jnp.dtype) -> optax.GradientTransformation:
    """`inner` with its floating-point state kept in `dtype` between steps and updated in float32."""

    def cast(tree, to):
        return jax.tree.map(lambda x: x.astype(to) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)

    def init(params):
        return cast(inner.init(params), dtype)

    def update(updates, state, params=None):
        updates, state = inner.update(updates, cast(state, jnp.float32), params)
        return updates, cast(state, dtype)

    return optax.GradientTransformation(init, update)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    adamw = optax.adamw(schedule(cfg), b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask)
    if cfg.moment_dtype != "float32":
        adamw = stored_as(adamw, jnp.dtype(cfg.moment_dtype))
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
