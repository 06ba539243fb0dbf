"""AdamW with warmup then constant or cosine learning rate, global-norm clipping, and weight decay
on matrices only (norm scales and biases are not decayed)."""

from __future__ import annotations

import jax
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


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.adamw(schedule(cfg), b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask),
    )
