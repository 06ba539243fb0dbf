"""Human-readable model facts for `starjax info`: the parameter table and a timed forward pass."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from starjax.model.transformer import abstract_model, create_model
from starjax.schema import ModelConfig
from starjax.sharding import AxisRules


def describe_model(cfg: ModelConfig, rules: AxisRules) -> str:
    """Parameter table (block 0 stands for every block; with model.scan_layers, the stacked
    weights with their leading "layers" axis) with logical axes and mesh sharding."""
    _, state = nnx.split(abstract_model(cfg, rules))
    rows, total = [], 0
    for path, var in nnx.to_flat_state(state):
        total += math.prod(var.shape)
        name = ".".join(map(str, path))
        names = var.get_metadata()["out_sharding"]
        spec = tuple(rules.spec(names))
        if name.startswith("blocks."):
            if cfg.scan_layers:  # blocks.attn.q [layers, ...]
                names, rest = ("layers", *names[1:]), name[len("blocks.") :]
            elif name.startswith("blocks.0."):
                rest = name[len("blocks.0.") :]
            else:
                continue
            name = f"blocks.*.{rest}"
        rows.append((name, "x".join(map(str, var.shape)), ",".join(map(str, names)), str(spec)))
    widths = [max(len(r[i]) for r in rows + [("parameter", "shape", "logical axes", "mesh axes")]) for i in range(4)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [f"   model: {total:,} parameters, {cfg.num_layers} blocks ({cfg.param_dtype} params, {cfg.compute_dtype} compute)"]
    lines.append("  " + fmt.format("parameter", "shape", "logical axes", "mesh axes"))
    lines += ["  " + fmt.format(*r) for r in rows]
    return "\n".join(lines)


@dataclass
class ForwardTiming:
    shape: tuple[int, ...]
    spec: str
    compile_s: float
    step_ms: float
    tokens_per_s: float


def time_forward(cfg: ModelConfig, rules: AxisRules, seed: int, batch: int, length: int, repeats: int = 5) -> ForwardTiming:
    """Creates the model sharded on the mesh and times a jitted forward pass (median of `repeats`)."""
    t0 = time.perf_counter()
    graphdef, state = nnx.split(create_model(cfg, rules, seed))
    tokens = jax.random.randint(jax.random.key(seed), (batch, length), 0, cfg.vocab_size)
    tokens = jax.device_put(tokens, rules.sharding(("batch", "length")))
    forward = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t)[0])
    logits = forward(state, tokens).block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        forward(state, tokens).block_until_ready()
        times.append(time.perf_counter() - t)
    step = sorted(times)[len(times) // 2]
    if not bool(jnp.isfinite(logits).all()):
        raise FloatingPointError("forward pass produced non-finite logits")
    return ForwardTiming(tuple(logits.shape), str(logits.sharding.spec), compile_s, step * 1e3, batch * length / step)
