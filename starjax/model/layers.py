"""Building blocks of the Llama-family transformer: RMSNorm, rotary embeddings, SwiGLU, GQA attention.

Weights are stored in `param_dtype` and cast to `compute_dtype` at use; normalisation, softmax
and rotary angles are computed in float32 whatever the compute dtype.
"""

from __future__ import annotations

import math
import warnings

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from starjax.model import splash
from starjax.schema import ModelConfig
from starjax.sharding import AxisRules, Names

NEG_INF = -1e30  # finite: a fully masked row (padding) must not produce NaN


def dtype_of(name: str) -> jnp.dtype:
    return jnp.dtype(name)


def head_dim_of(cfg: ModelConfig) -> int:
    return cfg.head_dim or cfg.d_model // cfg.num_heads


# On XLA:CPU a product with few rows runs 1.2-1.5x faster as weight[out, in] @ x[in, rows] than
# as x[rows, in] @ weight[in, out] (benchmarks/decode_products.py), but the two transposes around
# it cost more than that saves on small weights. Measured with benchmarks/decode_layout.py: the
# 768-wide `small` preset's whole calls 1.08-1.10x faster with its large weights out-major, the
# 256-wide `tiny` 0.91-0.96x with all of them (--out-major-min-size 0).
OUT_MAJOR_MIN_SIZE = 1 << 20


@flax.struct.dataclass
class DecodeWeight:
    """A weight [in, out] in the layout decoding reads it: as stored, or transposed (out-major)
    when it is large and the backend is the CPU (`OUT_MAJOR_MIN_SIZE`)."""

    value: jax.Array
    out_major: bool = flax.struct.field(pytree_node=False, default=False)

    @classmethod
    def of(cls, weight: jax.Array, dtype=None) -> "DecodeWeight":
        """`dtype`: the compute dtype; stored in it, each decode step reads bfloat16 weights, not
        float32 ones it would round to the same values (half the bytes of a memory-bound step)."""
        weight = weight if dtype is None else weight.astype(dtype)
        out_major = jax.default_backend() == "cpu" and weight.size >= OUT_MAJOR_MIN_SIZE
        return cls(weight.T if out_major else weight, out_major)

    def apply(self, x: jax.Array, preferred_element_type=None) -> jax.Array:
        """x [rows, in] times the weight: [rows, out]."""
        w = self.value.astype(x.dtype)
        if not self.out_major:
            return jnp.matmul(x, w, preferred_element_type=preferred_element_type)
        # Barriers: without them XLA folds both transposes into the product and is back to the
        # slow layout.
        xt = jax.lax.optimization_barrier(x.T)
        return jax.lax.optimization_barrier(jnp.matmul(w, xt, preferred_element_type=preferred_element_type)).T


def init_param(rngs: nnx.Rngs, rules: AxisRules, shape: tuple[int, ...], names: Names, std: float, dtype) -> nnx.Param:
    value = std * jax.random.normal(rngs.params(), shape, jnp.float32)
    return nnx.Param(value.astype(dtype), **rules.param_metadata(names))


class RMSNorm(nnx.Module):
    """x / rms(x) * (offset + scale): offset 1 stores Gemma's weights as they are, so import and
    export are pure relayouts."""

    def __init__(self, dim: int, cfg: ModelConfig, rules: AxisRules):
        self.eps = cfg.norm_eps
        self.offset = cfg.norm_offset
        init = jnp.full((dim,), 1.0 - cfg.norm_offset, dtype_of(cfg.param_dtype))
        self.scale = nnx.Param(init, **rules.param_metadata(("norm",)))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * (self.offset + self.scale[...].astype(jnp.float32))).astype(x.dtype)


def rope_frequencies(cfg: ModelConfig) -> jax.Array:
    """Inverse frequencies [head_dim / 2], computed as transformers does (float32), with Llama 3.1's
    or linear scaling when configured."""
    dim = head_dim_of(cfg)
    inv = 1.0 / (cfg.rope_theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    r = cfg.rope_scaling
    if r is None:
        return inv
    if r.rope_type == "linear":
        return inv / r.factor
    # llama3: long wavelengths divided by `factor`, short ones kept, a smooth blend between.
    low_wavelen = r.original_max_position_embeddings / r.low_freq_factor
    high_wavelen = r.original_max_position_embeddings / r.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = jnp.where(wavelen > low_wavelen, inv / r.factor, inv)
    smooth = (r.original_max_position_embeddings / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor)
    blended = (1 - smooth) * scaled / r.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return jnp.where(medium, blended, scaled)


def rope_tables(positions: jax.Array, inv_freq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sin, cos) [B, 1, T, D/2] of the rotary angles for positions [B, T], computed once per
    forward for every layer's q and k. The barrier keeps them one buffer each: without it XLA
    fuses sin and cos into every consumer and evaluates them again for each head group, layer
    and backward product (docs/star.md#time), to the same values."""
    angles = positions.astype(jnp.float32)[:, None, :, None] * inv_freq
    return jax.lax.optimization_barrier((jnp.sin(angles), jnp.cos(angles)))


def apply_rope(x: jax.Array, rope: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Rotary embedding, half-split convention (as Hugging Face Llama). x: [B, H, T, D], rope: `rope_tables`."""
    sin, cos = rope
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def cudnn_sizes(head_dim: int, dtype: jnp.dtype) -> bool:
    """Whether cuDNN's fused attention takes these q/k/v: 16-bit, head dims of 8s up to 256
    (above 128 on Hopper and newer; elsewhere JAX refuses at trace time and XLA's runs)."""
    return jnp.dtype(dtype).itemsize == 2 and head_dim % 8 == 0 and head_dim <= 256


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, causal: bool) -> jax.Array:
    """q: [B, H, T, D]; k, v: [B, K, S, D]; mask: [B, T, S]. Returns [B, T, H, D]. `causal`: the
    mask is causal within segments and there is no cache (training, a prefill without one).

    On a GPU that is cuDNN's fused (flash) attention where it takes the sizes: the default of
    jax.nn.dot_product_attention (`implementation=None`) is XLA's, which keeps every float32
    score for the backward pass (64 GiB for a 1B model's 8 x 2,048 tokens, measured on an H200)."""
    args = (q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3))
    scale = 1 / math.sqrt(q.shape[-1])
    if causal and on_gpu() and cudnn_sizes(q.shape[-1], q.dtype):
        try:  # the segment mask rides along as cuDNN's bias; is_causal lets it skip upper blocks
            return jax.nn.dot_product_attention(*args, mask=mask[:, None], scale=scale, is_causal=True, implementation="cudnn")
        except (ValueError, NotImplementedError, RuntimeError) as e:  # at trace time: an old cuDNN, say
            warnings.warn(f"cuDNN attention unavailable ({e}); using XLA's", stacklevel=2)
    return jax.nn.dot_product_attention(*args, mask=mask[:, None], scale=scale)


@flax.struct.dataclass
class FusedMLP:
    """`MLP.fused_weights()`: gate and up interleaved in one matrix, and down."""

    gate_up: DecodeWeight
    down: DecodeWeight


@flax.struct.dataclass
class FusedAttention:
    """`Attention.fused_weights()`: q, k and v grouped per KV head in one matrix, its bias, and o."""

    qkv: DecodeWeight
    qkv_bias: jax.Array | None
    o: DecodeWeight


class MLP(nnx.Module):
    """Gated MLP: down(act(x @ gate) * (x @ up)); act = silu (SwiGLU) or tanh-approximated gelu (GeGLU)."""

    def __init__(self, cfg: ModelConfig, rules: AxisRules, rngs: nnx.Rngs):
        pdt = dtype_of(cfg.param_dtype)
        out_std = cfg.init_std / math.sqrt(2 * cfg.num_layers)
        self.rules = rules
        self.activation = cfg.activation
        self.compute_dtype = cfg.compute_dtype
        self.gate = init_param(rngs, rules, (cfg.d_model, cfg.mlp_dim), ("embed", "mlp"), cfg.init_std, pdt)
        self.up = init_param(rngs, rules, (cfg.d_model, cfg.mlp_dim), ("embed", "mlp"), cfg.init_std, pdt)
        self.down = init_param(rngs, rules, (cfg.mlp_dim, cfg.d_model), ("mlp", "embed"), out_std, pdt)

    def fused_weights(self) -> FusedMLP:
        """gate and up as one [E, 2M] matrix, interleaved (column 2m is gate m, 2m + 1 is up m):
        one product per decode step instead of two, and an "mlp"-sharded dimension stays local;
        and down. Both in decoding's layout (`DecodeWeight`)."""
        e = self.gate.shape[0]
        gate_up = jnp.stack([self.gate[...], self.up[...]], axis=-1).reshape(e, -1)
        dt = dtype_of(self.compute_dtype)
        return FusedMLP(DecodeWeight.of(gate_up, dt), DecodeWeight.of(self.down[...], dt))

    def __call__(self, x: jax.Array, fused: FusedMLP | None = None) -> jax.Array:
        """`fused`: `fused_weights()`, computed once outside a decode loop (same result)."""
        dt = x.dtype
        b, t, e = x.shape
        # 2-D products: with [B, T, E] operands XLA:CPU transposes (copies) the activations and
        # gradients for every weight-gradient product, a third of a training step's time.
        x2 = x.reshape(b * t, e)
        if fused is None:
            g, u = x2 @ self.gate[...].astype(dt), x2 @ self.up[...].astype(dt)
        else:
            y = fused.gate_up.apply(x2).reshape(b * t, -1, 2)
            g, u = y[..., 0], y[..., 1]
        g = jax.nn.silu(g) if self.activation == "silu" else jax.nn.gelu(g, approximate=True)
        h = self.rules.constrain((g * u).reshape(b, t, -1), ("batch", "length", "act_mlp")).reshape(b * t, -1)
        out = h @ self.down[...].astype(dt) if fused is None else fused.down.apply(h)
        return out.reshape(b, t, e)


class Attention(nnx.Module):
    """Grouped-query attention: query head h reads key/value head h // (num_heads // num_kv_heads)."""

    def __init__(self, cfg: ModelConfig, rules: AxisRules, rngs: nnx.Rngs):
        pdt = dtype_of(cfg.param_dtype)
        e, h, k, d = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, head_dim_of(cfg)
        out_std = cfg.init_std / math.sqrt(2 * cfg.num_layers)
        self.rules = rules
        self.cfg = cfg
        self.q = init_param(rngs, rules, (e, h, d), ("embed", "heads", "head_dim"), cfg.init_std, pdt)
        self.k = init_param(rngs, rules, (e, k, d), ("embed", "kv_heads", "head_dim"), cfg.init_std, pdt)
        self.v = init_param(rngs, rules, (e, k, d), ("embed", "kv_heads", "head_dim"), cfg.init_std, pdt)
        self.o = init_param(rngs, rules, (h, d, e), ("heads", "head_dim", "embed"), out_std, pdt)
        if cfg.qkv_bias:

            def zeros(*shape: int) -> jax.Array:
                return jnp.zeros(shape, pdt)

            self.q_bias = nnx.Param(zeros(h, d), **rules.param_metadata(("heads", "head_dim")))
            self.k_bias = nnx.Param(zeros(k, d), **rules.param_metadata(("kv_heads", "head_dim")))
            self.v_bias = nnx.Param(zeros(k, d), **rules.param_metadata(("kv_heads", "head_dim")))
        else:
            self.q_bias = self.k_bias = self.v_bias = None

    def fused_weights(self) -> FusedAttention:
        """q, k and v as one [E, K * (G + 2) * D] matrix and its bias, grouped per KV head (its
        G query heads, its key, its value): one product per decode step instead of three, and a
        "kv_heads"-sharded dimension stays local; and o as [H * D, E]. Weights in decoding's
        layout (`DecodeWeight`)."""
        e, h, d = self.q.shape
        kv = self.k.shape[1]

        def grouped(q, k, v):
            lead = q.shape[:-2]
            parts = (q.reshape(*lead, kv, h // kv, d), k.reshape(*lead, kv, 1, d), v.reshape(*lead, kv, 1, d))
            return jnp.concatenate(parts, axis=-2)

        dt = dtype_of(self.cfg.compute_dtype)
        weight = DecodeWeight.of(grouped(self.q[...], self.k[...], self.v[...]).reshape(e, -1), dt)
        o = DecodeWeight.of(self.o[...].reshape(h * d, e), dt)
        if self.q_bias is None:
            return FusedAttention(weight, None, o)
        return FusedAttention(weight, grouped(self.q_bias[...], self.k_bias[...], self.v_bias[...]).reshape(-1), o)

    def project_qkv(
        self, x: jax.Array, rope: tuple[jax.Array, jax.Array], fused: FusedAttention | None = None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Heads-major q [B, H, T, D] and k, v [B, K, T, D]: the layout attention and the cache use.

        `rope`: `rope_tables` of the tokens' positions. `fused`: `fused_weights()`, computed once
        outside a decode loop (same result)."""
        dt = x.dtype
        b, t, e = x.shape
        x2 = x.reshape(b * t, e)

        def heads_major(y):
            return y.transpose(0, 2, 1, 3)  # [B, heads, T, D]; free when T == 1 (decode)

        if fused is None:

            def proj(w, bias):
                # A plain 2-D matmul against the weight as stored: with einsum, XLA:CPU chose a
                # transposed product that copied the weight on every decode step.
                heads, d = w.shape[1], w.shape[2]
                y = (x2 @ w[...].astype(dt).reshape(e, heads * d)).reshape(b, t, heads, d)
                return heads_major(y if bias is None else y + bias[...].astype(dt))

            q, k, v = proj(self.q, self.q_bias), proj(self.k, self.k_bias), proj(self.v, self.v_bias)
        else:
            weight, bias = fused.qkv, fused.qkv_bias
            h, kv, d = self.cfg.num_heads, self.cfg.num_kv_heads, self.q.shape[2]
            y = weight.apply(x2)
            y = (y if bias is None else y + bias.astype(dt)).reshape(b, t, kv, h // kv + 2, d)
            q = heads_major(y[:, :, :, :-2].reshape(b, t, h, d))
            k, v = heads_major(y[:, :, :, -2]), heads_major(y[:, :, :, -1])
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        q = self.rules.constrain(q, ("batch", "act_heads", "length", None))
        k = self.rules.constrain(k, ("batch", "act_kv_heads", "length", None))
        v = self.rules.constrain(v, ("batch", "act_kv_heads", "length", None))
        return q, k, v

    def attend(
        self,
        q: jax.Array,
        k: jax.Array,
        v: jax.Array,
        mask: jax.Array,
        fused: FusedAttention | None = None,
        shared: tuple[jax.Array, jax.Array, jax.Array] | None = None,
        segments: jax.Array | None = None,
    ) -> jax.Array:
        """q: [B, H, T, D]; k, v: [B, K, S, D]; mask: [B, T, S] (True = may attend). Returns [B, T, E].

        `fused`: `fused_weights()` (its o is used). `shared`: (k, v [K, P, D], mask [B, T, P]) of
        a prefix every row attends to besides its own keys: one copy, read once for all rows,
        under one softmax with them. `segments` [B, T]: given when the mask is causal within
        them (no cache), which lets dot_product attention run splash on a TPU (splash.py)."""
        b, h, t, d = q.shape
        kv_heads = k.shape[1]
        if self.cfg.attention == "dot_product" and shared is None:
            cacheless = segments is not None and k.shape[2] == t  # causal within segments
            if cacheless and splash.usable(t, d):
                out = splash.splash_attention(q, k, v, segments, self.rules).transpose(0, 2, 1, 3)
            else:  # [B, T, heads, D] as jax.nn.dot_product_attention takes it; fewer kv heads = GQA
                out = dot_product_attention(q, k, v, mask, causal=cacheless)
            out = self.rules.constrain(out.astype(v.dtype), ("batch", "length", "act_heads", None)).reshape(b * t, h * d)
            out = out @ self.o[...].astype(out.dtype).reshape(h * d, -1) if fused is None else fused.o.apply(out)
            return out.reshape(b, t, -1)
        qg = q.reshape(b, kv_heads, h // kv_heads, t, d)
        logits = jnp.einsum("bkgtd,bksd->bkgts", qg, k, preferred_element_type=jnp.float32)
        logits = jnp.where(mask[:, None, None], logits / math.sqrt(d), NEG_INF)
        if shared is None:
            probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
            out = jnp.einsum("bkgts,bksd->bkgtd", probs, v)
        else:
            pk, pv, pmask = shared
            pk = self.rules.constrain(pk, ("act_kv_heads", None, None))
            pv = self.rules.constrain(pv, ("act_kv_heads", None, None))
            plogits = jnp.einsum("bkgtd,ksd->bkgts", qg, pk, preferred_element_type=jnp.float32)
            plogits = jnp.where(pmask[:, None, None], plogits / math.sqrt(d), NEG_INF)
            probs = jax.nn.softmax(jnp.concatenate([plogits, logits], axis=-1), axis=-1).astype(v.dtype)
            split = pk.shape[1]
            out = jnp.einsum("bkgts,ksd->bkgtd", probs[..., :split], pv) + jnp.einsum("bkgts,bksd->bkgtd", probs[..., split:], v)
        out = out.reshape(b, h, t, d)
        out = self.rules.constrain(out, ("batch", "act_heads", "length", None))
        out = out.transpose(0, 2, 1, 3).reshape(b * t, h * d)
        out = out @ self.o[...].astype(out.dtype).reshape(h * d, -1) if fused is None else fused.o.apply(out)
        return out.reshape(b, t, -1)
