"""Key/value cache: a plain pytree, so it can be donated and carried through `lax.while_loop`.

Each slot remembers the position and segment id of the token written there. Attention masks
come from those (same segment, segment != 0, key position <= query position), which serves
left-padded prompts, per-row positions and packed rows alike. Segment 0 marks an empty or
padding slot that nothing attends to.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from starjax.model.layers import dtype_of, head_dim_of
from starjax.schema import ModelConfig
from starjax.sharding import AxisRules

KV_NAMES = ("batch", "act_kv_heads", "cache_length", None)
SLOT_NAMES = ("batch", "cache_length")


@flax.struct.dataclass
class KVCache:
    k: tuple[jax.Array, ...]  # per layer [B, K, S, D]: heads-major, as attention reads it
    v: tuple[jax.Array, ...]
    positions: jax.Array  # [B, S] int32
    segment_ids: jax.Array  # [B, S] int32, 0 = empty
    index: jax.Array  # [] int32: the next slot to write (all rows advance together), or [B]: per row

    @property
    def length(self) -> int:
        return self.positions.shape[1]

    @classmethod
    def init(cls, cfg: ModelConfig, rules: AxisRules, batch: int, length: int) -> "KVCache":
        """An empty cache, created directly in its sharded layout (also usable inside jit)."""
        return jax.jit(lambda: cls.zeros(cfg, batch, length), out_shardings=cls.shardings(rules, cfg.num_layers))()

    @classmethod
    def zeros(cls, cfg: ModelConfig, batch: int, length: int, index: jax.Array | None = None) -> "KVCache":
        """An empty cache with no sharding of its own: inside a program, for row counts a jit
        boundary could not split over the mesh. `index`: [] (default 0) or per row [B]."""
        shape = (batch, cfg.num_kv_heads, length, head_dim_of(cfg))
        zeros = tuple(jnp.zeros(shape, dtype_of(cfg.compute_dtype)) for _ in range(cfg.num_layers))
        slots = jnp.zeros((batch, length), jnp.int32)
        return cls(zeros, zeros, slots, slots, jnp.zeros((), jnp.int32) if index is None else index)

    @classmethod
    def shardings(cls, rules: AxisRules, num_layers: int) -> "KVCache":
        kv = tuple(rules.sharding(KV_NAMES) for _ in range(num_layers))
        slot = rules.sharding(SLOT_NAMES)
        return cls(kv, kv, slot, slot, rules.sharding(()))

    def _put(self, dst: jax.Array, src: jax.Array, axis: int) -> jax.Array:
        """dst with src written from slot `index` along `axis` (per row when index is [B])."""
        src = src.astype(dst.dtype)
        if self.index.ndim == 0:
            start = [0] * dst.ndim
            start[axis] = self.index
            return jax.lax.dynamic_update_slice(dst, src, start)
        row_start = lambda i: [i if a == axis - 1 else 0 for a in range(dst.ndim - 1)]  # noqa: E731
        return jax.vmap(lambda d, s, i: jax.lax.dynamic_update_slice(d, s, row_start(i)))(dst, src, self.index)

    def write_slots(self, positions: jax.Array, segment_ids: jax.Array) -> "KVCache":
        """Records positions/segments of T new tokens at slots [index, index + T)."""
        return self.replace(
            positions=self._put(self.positions, positions, 1), segment_ids=self._put(self.segment_ids, segment_ids, 1)
        )

    def write_layer(self, layer: int, k: jax.Array, v: jax.Array) -> tuple["KVCache", jax.Array, jax.Array]:
        """Stores layer `layer`'s new keys/values at slot `index`; returns the cache and the full K, V."""
        new_k = self._put(self.k[layer], k, 2)
        new_v = self._put(self.v[layer], v, 2)
        ks = self.k[:layer] + (new_k,) + self.k[layer + 1 :]
        vs = self.v[:layer] + (new_v,) + self.v[layer + 1 :]
        return self.replace(k=ks, v=vs), new_k, new_v

    def fill_from(self, prefix: "KVCache", repeats: int) -> "KVCache":
        """This buffer holding `prefix` (B rows) in its first slots, each row repeated `repeats` times.

        Later slots become empty. Writing into the existing buffers (rather than allocating)
        lets a donated cache be reused across calls.
        """
        rows, length = prefix.positions.shape
        if rows * repeats != self.positions.shape[0] or length > self.length:
            raise ValueError(f"cannot fill a {self.positions.shape} cache from {prefix.positions.shape} x {repeats} rows")
        rep = lambda x: jnp.repeat(x, repeats, axis=0)  # noqa: E731
        put = lambda dst, src: jax.lax.dynamic_update_slice(dst, rep(src).astype(dst.dtype), (0,) * dst.ndim)  # noqa: E731
        empty = jnp.zeros_like(self.positions)
        return KVCache(
            k=tuple(put(d, s) for d, s in zip(self.k, prefix.k)),
            v=tuple(put(d, s) for d, s in zip(self.v, prefix.v)),
            positions=put(empty, prefix.positions),
            segment_ids=put(empty, prefix.segment_ids),
            index=prefix.index,
        )

    def advance(self, num_tokens: int) -> "KVCache":
        return self.replace(index=self.index + num_tokens)
