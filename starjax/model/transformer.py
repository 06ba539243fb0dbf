"""Decoder-only Llama-family transformer (RMSNorm, RoPE, SwiGLU, GQA), Flax NNX.

One forward serves training (packed rows with segment ids), prefill and decode (with a
KVCache): callers pass explicit positions, so left padding, per-row offsets and packing are
all the same code path.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from starjax.model.kv_cache import KVCache
from starjax.model.layers import (
    MLP,
    Attention,
    DecodeWeight,
    FusedAttention,
    FusedMLP,
    RMSNorm,
    dtype_of,
    init_param,
    rope_frequencies,
    rope_tables,
)
from starjax.schema import ModelConfig
from starjax.sharding import AxisRules

# What a layer's backward pass keeps from its forward pass (train.remat); the rest is recomputed.
REMAT_POLICIES = {"full": None, "dots_saveable": jax.checkpoint_policies.dots_saveable}


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rules: AxisRules, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg, rules)
        self.attn = Attention(cfg, rules, rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg, rules)
        self.mlp = MLP(cfg, rules, rngs)


def stack_blocks(blocks: list[Block]) -> Block:
    """One Block holding every layer's weights stacked on a leading, unsharded axis
    (model.scan_layers); the same values as the list, layer i at index i."""
    graphdef, _ = nnx.split(blocks[0])

    def stack(*variables: nnx.Variable) -> nnx.Variable:
        meta = variables[0].get_metadata()
        value = jnp.stack([v[...] for v in variables])
        return type(variables[0])(value, **{**meta, "out_sharding": (None, *meta["out_sharding"])})

    is_variable = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    return nnx.merge(graphdef, jax.tree.map(stack, *(nnx.state(b) for b in blocks), is_leaf=is_variable))


def layer_of(stacked: Block, i: int) -> Block:
    """Layer i of stacked blocks, as a Block (slices of the stacked weights)."""
    graphdef, state = nnx.split(stacked)
    return nnx.merge(graphdef, jax.tree.map(lambda a: a[i], state))


def stack_layer_dicts(pure: dict, scan: bool) -> dict:
    """A pure parameter dict (`nnx.to_pure_dict`) in the stacked layout (scan=True) or the
    per-layer one ({"blocks": {0: ..., 1: ...}}), whichever it is in now."""
    blocks = pure["blocks"]
    stacked = not all(isinstance(k, int) for k in blocks)
    if stacked == scan:
        return pure
    if scan:
        return {**pure, "blocks": jax.tree.map(lambda *xs: jnp.stack(xs), *(blocks[i] for i in range(len(blocks))))}
    layers = jax.tree.leaves(blocks)[0].shape[0]
    return {**pure, "blocks": {i: jax.tree.map(lambda a, i=i: a[i], blocks) for i in range(layers)}}


@flax.struct.dataclass
class FusedWeights:
    """`Transformer.fused_weights()`: each layer's fused attention and MLP weights, and the output
    projection when decoding reads it out-major (None: the stored one)."""

    attention: tuple[FusedAttention, ...]
    mlp: tuple[FusedMLP, ...]
    head: DecodeWeight | None


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rules: AxisRules, rngs: nnx.Rngs):
        if cfg.vocab_size is None:
            raise ValueError("model.vocab_size is unset; take it from the tokenizer before building the model")
        pdt = dtype_of(cfg.param_dtype)
        self.cfg = cfg
        self.rules = rules
        self.embed = init_param(rngs, rules, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), cfg.init_std, pdt)
        blocks = [Block(cfg, rules, rngs) for _ in range(cfg.num_layers)]
        self.blocks = stack_blocks(blocks) if cfg.scan_layers else nnx.List(blocks)
        self.final_norm = RMSNorm(cfg.d_model, cfg, rules)
        if cfg.tie_embeddings:
            self.lm_head = None
        else:
            self.lm_head = init_param(rngs, rules, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), cfg.init_std, pdt)

    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: KVCache | None = None,
        *,
        last_only: bool = False,
        fused: FusedWeights | None = None,
        prefix: KVCache | None = None,
        remat: str = "none",
    ) -> tuple[jax.Array, KVCache | None]:
        """Returns float32 logits [B, T, V] and the updated cache (None without one).

        last_only=True computes logits for the last column only ([B, 1, V]): a prefill needs
        no more, and the output projection over every prompt token is a large share of its cost.

        tokens, positions, segment_ids: [B, T] int. positions default to 0..T-1 and
        segment_ids to all ones; segment 0 marks padding, which nothing attends to.
        With a cache, the T tokens are written at slots [cache.index, cache.index + T).
        fused: `fused_weights()`, for a loop that calls the model many times with the same weights.
        prefix: a one-row cache every row attends to before its own keys (a shared prompt
        prefix, stored once; the tokens' positions continue after it).
        remat (without a cache, i.e. training): what the backward pass recomputes instead of
        storing, per layer: none; full (everything but the layer's input); dots_saveable (all
        but the matmul outputs).
        """
        b, t = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        rules = self.rules

        if cache is None:
            kv_pos, kv_seg = positions, segment_ids
        else:
            cache = cache.write_slots(positions, segment_ids)
            kv_pos, kv_seg = cache.positions, cache.segment_ids
        mask = (
            (segment_ids[:, :, None] == kv_seg[:, None, :])
            & (kv_seg[:, None, :] != 0)
            & (kv_pos[:, None, :] <= positions[:, :, None])
        )

        shared_mask = None
        if prefix is not None:
            shared_mask = (prefix.segment_ids[0] != 0)[None, None, :] & (
                prefix.positions[0][None, None, :] <= positions[:, :, None]
            )
        dt = dtype_of(self.cfg.compute_dtype)
        x = jnp.take(self.embed[...], tokens, axis=0).astype(dt)
        if self.cfg.scale_embeddings:  # Gemma: the scale is rounded to the compute dtype first, as in transformers
            x = x * jnp.asarray(self.cfg.d_model**0.5, dt)
        x = rules.constrain(x, ("batch", "length", "act_embed"))
        head = None if fused is None else fused.head
        rope = rope_tables(positions, rope_frequencies(self.cfg))

        def layer(i: int, block: Block, x: jax.Array, cache: KVCache | None) -> tuple[jax.Array, KVCache | None]:
            attn_w, mlp_w = (None, None) if fused is None else (fused.attention[i], fused.mlp[i])
            q, k, v = block.attn.project_qkv(block.attn_norm(x), rope, attn_w)
            if cache is not None:
                cache, k, v = cache.write_layer(i, k, v)
            shared = None if prefix is None else (prefix.k[i][0], prefix.v[i][0], shared_mask)
            segments = segment_ids if cache is None and prefix is None else None
            x = x + block.attn.attend(q, k, v, mask, attn_w, shared, segments)
            x = rules.constrain(x, ("batch", "length", "act_embed"))
            x = x + block.mlp(block.mlp_norm(x), mlp_w)
            return rules.constrain(x, ("batch", "length", "act_embed")), cache

        if self.cfg.scan_layers and cache is None and prefix is None and fused is None:
            # One layer's program, run num_layers times (compile time flat in depth).
            graphdef, stacked = nnx.split(self.blocks)

            def one_layer(h: jax.Array, weights: nnx.State) -> jax.Array:
                return layer(0, nnx.merge(graphdef, weights), h, None)[0]

            if remat != "none":
                one_layer = jax.checkpoint(one_layer, policy=REMAT_POLICIES[remat], prevent_cse=False)
            x, _ = jax.lax.scan(lambda h, w: (one_layer(h, w), None), x, stacked)
        else:
            for i, block in enumerate(self.layers()):
                if remat != "none" and cache is None:
                    recomputed = nnx.remat(lambda b, h, i=i: layer(i, b, h, None)[0], policy=REMAT_POLICIES[remat])
                    x = recomputed(block, x)
                else:
                    x, cache = layer(i, block, x, cache)

        if last_only:
            x = x[:, -1:]
        x = self.final_norm(x)
        rows = x.reshape(-1, x.shape[-1])  # 2-D, as in the MLP: no transposed copies in the backward pass
        if head is not None:
            logits = head.apply(rows, preferred_element_type=jnp.float32)
        elif self.lm_head is None:
            logits = jnp.einsum("ne,ve->nv", rows, self.embed[...].astype(dt), preferred_element_type=jnp.float32)
        else:
            logits = jnp.einsum("ne,ev->nv", rows, self.lm_head[...].astype(dt), preferred_element_type=jnp.float32)
        logits = logits.reshape(*x.shape[:-1], -1)
        logits = rules.constrain(logits, ("batch", "length", "act_vocab"))
        if cache is not None:
            cache = cache.advance(t)
        return logits, cache

    def layers(self) -> list[Block]:
        """The blocks in order (with model.scan_layers, slices of the stacked weights)."""
        if self.cfg.scan_layers:
            return [layer_of(self.blocks, i) for i in range(self.cfg.num_layers)]
        return list(self.blocks)

    def fused_weights(self) -> FusedWeights:
        """An inference layout that decoding computes once per call (a copy of the weights it
        changes): per layer, q/k/v and gate/up concatenated for one product each, which saves
        three of a layer's seven matmul launches per token, the main cost of a small model's
        step; on the CPU, large weights out-major (`DecodeWeight`); and the output projection
        when it is out-major (None: the stored one)."""
        layers = self.layers()
        attention = tuple(block.attn.fused_weights() for block in layers)
        mlp = tuple(block.mlp.fused_weights() for block in layers)
        head = DecodeWeight.of(self.embed[...].T if self.lm_head is None else self.lm_head[...], dtype_of(self.cfg.compute_dtype))
        return FusedWeights(attention, mlp, head if head.out_major else None)


def abstract_model(cfg: ModelConfig, rules: AxisRules) -> Transformer:
    """The model's structure with ShapeDtypeStructs for values: no memory, no computation."""
    return nnx.eval_shape(lambda: Transformer(cfg, rules, nnx.Rngs(0)))


def create_model(cfg: ModelConfig, rules: AxisRules, seed: int = 0) -> Transformer:
    """Initialises the model directly in its sharded layout (no full copy on one device). On a
    one-device mesh, op by op instead: the same values, from a few small programs that XLA
    compiles in half the time of the whole initialisation as one (the first compile of a run)."""
    graphdef, abstract_state = nnx.split(abstract_model(cfg, rules))
    shardings = nnx.get_named_sharding(abstract_state, rules.mesh)

    def init(key: jax.Array) -> nnx.State:
        return nnx.state(Transformer(cfg, rules, nnx.Rngs(params=key)))

    if rules.mesh.size == 1:
        state = jax.device_put(init(jax.random.key(seed)), shardings)
    else:
        state = jax.jit(init, out_shardings=shardings)(jax.random.key(seed))
    return nnx.merge(graphdef, state)


def with_rules(model: Transformer, rules: AxisRules) -> Transformer:
    """`model`'s weights laid out by `rules` (another mesh: the sampler's own, say), same values."""
    if model.rules == rules:
        return model
    graphdef, abstract = nnx.split(abstract_model(model.cfg, rules))
    state = jax.device_put(nnx.state(model), nnx.get_named_sharding(abstract, rules.mesh))
    return nnx.merge(graphdef, state)


def relayout(model: Transformer, cfg: ModelConfig) -> Transformer:
    """`model`'s weights as the model of `cfg`, which may differ from it in scan_layers only
    (the per-layer layout checkpoints and Hugging Face files use, or the stacked one)."""
    if model.cfg.scan_layers == cfg.scan_layers:
        return model
    graphdef, abstract = nnx.split(abstract_model(cfg, model.rules))
    shardings = nnx.to_pure_dict(nnx.get_named_sharding(abstract, model.rules.mesh))
    pure = jax.jit(lambda p: stack_layer_dicts(p, cfg.scan_layers), out_shardings=shardings)(nnx.to_pure_dict(nnx.state(model)))
    nnx.replace_by_pure_dict(abstract, pure)
    return nnx.merge(graphdef, abstract)


def count_params(model: nnx.Module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
