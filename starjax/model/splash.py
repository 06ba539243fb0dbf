"""Splash attention (Pallas, TPU) for `model.attention=dot_product` without a KV cache: training
steps and cacheless forwards, whose masks are causal within segments.

The kernel runs per device (under `shard_map`: rows over the batch axes, KV heads over the
tensor axis) and per KV head (an MQA kernel over its group of query heads). It needs sequence
lengths and head dims that are multiples of 128; anything else, and every other backend, falls
back to `jax.nn.dot_product_attention`. On the CPU the tests run the same kernel in Pallas'
interpreter (`MODE` = "interpret").
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from starjax.sharding import AxisRules

LANES = 128
# "auto": the kernel on a TPU where the shapes allow it; "interpret": the kernel in Pallas'
# interpreter, on any backend (tests); "off": never.
MODE = "auto"


def usable(seq_len: int, head_dim: int) -> bool:
    """Whether a cacheless attention of these sizes runs through splash on this backend."""
    if MODE == "off" or seq_len % LANES or head_dim % LANES:
        return False
    return MODE == "interpret" or jax.default_backend() == "tpu"


@functools.cache
def _kernel(group: int, seq_len: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks

    block = math.gcd(seq_len, 512)
    blocks = ("q", "kv", "kv_compute", "q_dkv", "kv_dkv", "kv_dkv_compute", "q_dq", "kv_dq")
    sizes = kernel.BlockSizes(**{f"block_{name}": block for name in blocks})  # one block size for every pass
    causal = masks.MultiHeadMask([masks.CausalMask((seq_len, seq_len)) for _ in range(group)])
    with jax.ensure_compile_time_eval():  # the mask's block tables: constants, not tracers of the caller's jit
        attend = kernel.make_splash_mqa_single_device(mask=causal, block_sizes=sizes, interpret=interpret)
    return attend, kernel.SegmentIds


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, segments: jax.Array, rules: AxisRules) -> jax.Array:
    """q [B, H, T, D], k and v [B, K, T, D], segments [B, T] (0 = padding): [B, H, T, D], each
    token attending to the tokens at or before it in its own segment (positions must grow along a
    segment, as in every packed or padded row starjax builds). Padding rows attend to padding,
    where the einsum path averages every key: rows no loss or later token reads."""
    b, h, t, d = q.shape
    kv = k.shape[1]
    attend, segment_ids = _kernel(h // kv, t, MODE == "interpret")

    def local(q, k, v, segments):
        def one_group(q, k, v, seg):  # [G, T, D], [T, D], [T, D], [T]
            return attend(q, k, v, segment_ids=segment_ids(seg, seg))

        per_row = jax.vmap(one_group, in_axes=(0, 0, 0, None))  # over KV heads
        return jax.vmap(per_row)(q, k, v, segments)  # over rows

    grouped = (q / jnp.asarray(math.sqrt(d), q.dtype)).reshape(b, kv, h // kv, t, d)
    rows, heads = rules.spec(("batch",))[0], rules.spec(("act_kv_heads",))[0]
    out = jax.shard_map(
        local,
        mesh=rules.mesh,
        in_specs=(
            PartitionSpec(rows, heads, None, None, None),
            PartitionSpec(rows, heads, None, None),
            PartitionSpec(rows, heads, None, None),
            PartitionSpec(rows, None),
        ),
        out_specs=PartitionSpec(rows, heads, None, None, None),
        check_vma=False,
    )(grouped, k, v, segments)
    return out.reshape(b, h, t, d)
