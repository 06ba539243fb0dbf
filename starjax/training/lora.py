"""LoRA (Hu et al. 2021): train a low-rank update B^T A^T ... of chosen weights, the rest frozen.

With `train.lora_rank` r > 0 the train state's parameters are adapters only: for each targeted
weight W (viewed as [in, out]) a pair a [in, r] (random) and b [r, out] (zeros), so training
starts from the base model exactly. The step computes W + (alpha / r) a @ b for the forward
pass; gradients and AdamW's moments exist for the adapters alone. `fit` returns the model with
the adapters merged into its weights, so a saved policy, the sampler and `export-hf` all see
plain weights.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from starjax.schema import TrainConfig

# The weights LoRA can target, with how many leading axes form their input:
# q, k, v [E, heads, D]; o [H, D, E]; gate, up [E, F]; down [F, E].
TARGETS = {"q": 1, "k": 1, "v": 1, "o": 2, "gate": 1, "up": 1, "down": 1}

Adapters = dict[str, dict[str, jax.Array]]  # "blocks/3/attn/q" -> {"a": [in, r], "b": [r, out]}
# A weight's own rank; more axes in front are model.scan_layers' stacked layers, and its adapter
# has them too ("blocks/attn/q" -> {"a": [layers, in, r], "b": [layers, r, out]}).
RANKS = {"q": 3, "k": 3, "v": 3, "o": 3, "gate": 2, "up": 2, "down": 2}


def _name(path) -> str:
    keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
    return "/".join(str(k) for k in keys if k is not None)


def _target(name: str, targets) -> str | None:
    parts = name.split("/")
    return parts[-1] if parts[0] == "blocks" and parts[-1] in targets and parts[-1] in TARGETS else None


def init_adapters(params: nnx.State, cfg: TrainConfig, seed: int) -> Adapters:
    """a ~ N(0, 1/in), b = 0 for every targeted weight of every block."""
    key = jax.random.key(seed)
    adapters: Adapters = {}
    for path, w in jax.tree_util.tree_leaves_with_path(params):
        name = _name(path)
        if (kind := _target(name, cfg.lora_targets)) is None:
            continue
        layers, shape = w.shape[: w.ndim - RANKS[kind]], w.shape[w.ndim - RANKS[kind] :]
        fan_in, fan_out = math.prod(shape[: TARGETS[kind]]), math.prod(shape[TARGETS[kind] :])
        a = jax.random.normal(jax.random.fold_in(key, len(adapters)), (*layers, fan_in, cfg.lora_rank), jnp.float32)
        adapters[name] = {"a": a / math.sqrt(fan_in), "b": jnp.zeros((*layers, cfg.lora_rank, fan_out), jnp.float32)}
    return adapters


def merge(params: nnx.State, adapters: Adapters, cfg: TrainConfig) -> nnx.State:
    """The base weights with each adapter's update added (in the weight's dtype)."""
    scale = cfg.lora_alpha / cfg.lora_rank

    def add(path, w):
        pair = adapters.get(_name(path))
        if pair is None:
            return w
        delta = (pair["a"] @ pair["b"]) * scale
        return (w.astype(jnp.float32) + delta.reshape(w.shape)).astype(w.dtype)

    return jax.tree_util.tree_map_with_path(add, params)
