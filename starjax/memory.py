"""Per-device memory of a config's train step and generation, for `starjax info --memory`.

Parameters, gradients, optimizer state and the KV cache are counted exactly from their shapes,
dtypes and shardings on the mesh (no devices needed: a mesh of any size can be asked about).
Activations are a model of what XLA keeps for the backward pass, per token and layer, under each
`train.remat` policy; its coefficients were fitted to `compiled.memory_analysis()` of the train
step on XLA:CPU (tests/test_memory.py holds it to 20% there). Other backends fuse differently:
treat the activation row as an estimate, the rest as exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from starjax.errors import ConfigError
from starjax.model import splash
from starjax.model.kv_cache import KV_NAMES, SLOT_NAMES
from starjax.model.layers import cudnn_sizes, dtype_of, head_dim_of
from starjax.model.transformer import abstract_model
from starjax.runtime import MESH_AXES, axes_text, mesh_shape
from starjax.sampling.engine import new_token_cap
from starjax.sampling.loop import growth_sizes
from starjax.schema import Config, MeshConfig
from starjax.sharding import AxisRules, Names
from starjax.training import lora

F32 = 4


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device. The train step holds params + gradients + optimizer + activations;
    generation holds its params (on sampler.mesh, when it has one) + its decode copy of the
    weights + the KV cache."""

    mesh: dict[str, int]
    generate_mesh: dict[str, int]
    params: int
    gradients: int
    optimizer: int
    gathered: int
    activations: int
    generate_params: int
    decode_weights: int
    kv_cache: int

    @property
    def train_total(self) -> int:
        return self.params + self.gradients + self.optimizer + self.gathered + self.activations

    @property
    def generate_total(self) -> int:
        return self.generate_params + self.decode_weights + self.kv_cache


class _Shards:
    """How many ways a logical axis is split on a mesh of the given sizes."""

    def __init__(self, mesh: MeshConfig, sizes: dict[str, int]):
        self.rules = {name: list(axes) for name, axes in mesh.rules.items()}
        self.sizes = sizes

    def of(self, name: str | None, gathered: bool = False) -> int:
        axes = [] if name is None else self.rules.get(name, [])
        return math.prod(self.sizes[a] for a in axes if not (gathered and a in ("data", "fsdp")))

    def bytes(self, shape: tuple[int, ...], names: Names, dtype, gathered: bool = False) -> int:
        """`gathered`: as the matmuls read it under FSDP, whole over the data and fsdp axes."""
        per_device = [math.ceil(n / self.of(a, gathered)) for n, a in zip(shape, names)]
        return math.prod(per_device) * jnp.dtype(dtype).itemsize


def estimate_memory(cfg: Config, rules: AxisRules, num_devices: int, platform: str | None = None) -> MemoryEstimate:
    """`cfg`'s memory per device on a mesh of `num_devices` (resolved from cfg.mesh as `start`
    would). `rules` only builds the model's structure; its own mesh may be any size. `platform`
    (default: JAX's backend): "gpu" runs model.attention=dot_product as cuDNN flash attention
    where its sizes allow (16-bit compute, head dims of 8s up to 256),
    "tpu" as splash attention where its sizes allow (multiples of 128)."""
    s = cfg.sampler
    # Generation on meshes of its own (sampler.mesh, one per replica): the trainer's may be smaller.
    own = s.mesh is not None
    sizes = dict(zip(MESH_AXES, mesh_shape(cfg.mesh, num_devices, own or s.replicas > 1)))
    shards = _Shards(cfg.mesh, sizes)
    generate_mesh = s.mesh or cfg.mesh
    generate_sizes = (
        dict(zip(MESH_AXES, mesh_shape(generate_mesh, num_devices // s.replicas, True, "sampler.mesh"))) if own else sizes
    )
    generation = _Shards(generate_mesh, generate_sizes)
    m, t = cfg.model, cfg.train
    _, state = nnx.split(abstract_model(m, rules))
    flat = nnx.to_flat_state(state)

    def weights(dtype=None, gathered: bool = False, only=lambda path: True, on: _Shards = shards) -> int:
        """Bytes per device of the model's weights (in `dtype`, default their own)."""
        return sum(
            on.bytes(v.shape, v.get_metadata()["out_sharding"], dtype or v.dtype, gathered) for path, v in flat if only(path)
        )

    params = weights()
    # XLA gathers FSDP-sharded weights whole (in their stored dtype) for the matmuls: every
    # layer's at once on XLA:CPU; the latency-hiding scheduler of TPU/GPU may hold fewer
    whole = weights(gathered=True)
    gathered = whole if whole > params else 0
    if gathered and m.scan_layers:  # the scan gathers one layer's weights at a time
        blocks = weights(gathered=True, only=lambda path: path[0] == "blocks")
        gathered = whole - blocks + blocks // m.num_layers
    if t.lora_rank:  # adapters: replicated float32, the only trainable weights
        adapters = jax.tree.leaves(jax.eval_shape(lambda s: lora.init_adapters(s, t, 0), state))
        trainable = sum(x.size * x.dtype.itemsize for x in adapters)
        trainable_count = sum(x.size for x in adapters)
        params += trainable
    else:
        trainable, trainable_count = params, params // dtype_of(m.param_dtype).itemsize
    optimizer = 2 * trainable_count * dtype_of(t.moment_dtype).itemsize
    # micro-batches: one micro-batch's gradients, whole before their reduce-scatter, live beside
    # the running sum
    if t.micro_batches > 1:
        gradients = trainable + (trainable if t.lora_rank else max(whole, trainable))
    else:
        gradients = trainable
    tensor = shards.of("act_heads")
    rows, split = divmod(t.batch_size // t.micro_batches, shards.of("batch"))
    if split or not rows:
        raise ConfigError(
            f"train.batch_size / train.micro_batches = {t.batch_size // t.micro_batches} rows do not split evenly "
            f"over the {shards.of('batch')} devices of the batch axes; change the batch or the mesh"
        )
    activations = (
        rows
        * t.seq_len
        * _bytes_per_token(cfg, tensor, shards.of("act_mlp"), shards.of("act_vocab"), platform or jax.default_backend())
    )

    layer_weights = weights(m.compute_dtype, only=lambda path: path[0] == "blocks" and path[-2] in ("attn", "mlp"), on=generation)
    decode_weights = layer_weights if cfg.sampler.fuse_weights else 0
    length = max(s.prompt_buckets) + new_token_cap(s.max_new_tokens)
    grown = growth_sizes(max(s.prompt_buckets), length, s.cache_growth)
    length += grown[-2] if len(grown) > 1 else 0  # a growing cache's last move holds two
    kv_shape = (s.batch_size, m.num_kv_heads, length, head_dim_of(m))
    kv_cache = 2 * m.num_layers * generation.bytes(kv_shape, KV_NAMES, m.compute_dtype)
    kv_cache += 2 * generation.bytes((s.batch_size, length), SLOT_NAMES, jnp.int32)
    generate_params = weights(on=generation) if own else params
    return MemoryEstimate(
        sizes, generate_sizes, params, gradients, optimizer, gathered, activations, generate_params, decode_weights, kv_cache
    )


def _bytes_per_token(cfg: Config, tensor: int, mlp_shards: int, vocab_shards: int, platform: str) -> float:
    """Activation bytes of one training token (one row position of a micro-batch), all layers
    and the output projection. Terms (per layer, per token; E model width, Q/K query and
    key-value width, F MLP width, H heads, S keys per query):
    - none: every intermediate: c*(5E + 2Q + 2K + 4.5F) plus float32 attention logits,
      probabilities and their gradient, 3*4*H*S;
    - dots_saveable: the matmul outputs the backward reads, c*(2Q + 2K + 2F) + 4*H*S, plus one
      layer's recomputed rest while its backward runs;
    - full: each layer's input and its gradient, 2*c*E, plus one layer recomputed whole.
    And the float32 logits with their gradient, 2*4*V, live when no layer is being recomputed
    (the larger of the two counts). Attention through cuDNN or splash (dot_product on a GPU with
    16-bit compute, or a TPU) keeps no H*S terms."""
    m, remat = cfg.model, cfg.train.remat
    c = dtype_of(m.compute_dtype).itemsize
    hd = head_dim_of(m)
    e, q, k = m.d_model, m.num_heads * hd / tensor, m.num_kv_heads * hd / tensor
    f, h = m.mlp_dim / mlp_shards, m.num_heads / tensor
    s = cfg.train.seq_len
    splash_sizes = s % splash.LANES == 0 and head_dim_of(m) % splash.LANES == 0
    cudnn = cudnn_sizes(hd, dtype_of(m.compute_dtype))
    flash = m.attention == "dot_product" and ((platform == "gpu" and cudnn) or (platform == "tpu" and splash_sizes))
    scores = 0 if flash else h * s * F32
    whole = c * (5 * e + 2 * q + 2 * k + 4.5 * f) + 3 * scores
    dots = c * (2 * q + 2 * k + 2 * f) + scores
    layers, head = m.num_layers, 2 * F32 * m.vocab_size / vocab_shards
    stored, working = {
        "none": (layers * whole, 0.0),
        "dots_saveable": (layers * dots, whole - dots),
        "full": (layers * 2 * c * e, whole),
    }[remat]
    # the recomputed layer and the output projection's logits are not live at the same time
    return stored + max(working, head)


def format_memory(est: MemoryEstimate, cfg: Config) -> str:
    """The table `starjax info --memory` prints."""
    mesh = axes_text(est.mesh)
    t, s = cfg.train, cfg.sampler
    what = [
        ("parameters", est.params, f"{cfg.model.param_dtype}" + (f" + LoRA rank {t.lora_rank} adapters" if t.lora_rank else "")),
        ("gradients", est.gradients, "trainable weights" + (", with the micro-batch sum" if t.micro_batches > 1 else "")),
        ("optimizer state", est.optimizer, f"AdamW moments in {t.moment_dtype}"),
        (
            "gathered weights",
            est.gathered,
            "FSDP all-gathers for the matmuls" if est.gathered else "none (weights not FSDP-sharded)",
        ),
        (
            "activations",
            est.activations,
            f"batch {t.batch_size}/{t.micro_batches} micro x {t.seq_len} tokens, remat {t.remat} (estimate)",
        ),
        ("train step", est.train_total, "total"),
        (
            "decode weights",
            est.decode_weights,
            "compute-dtype copy of the layers" if s.fuse_weights else "none (fuse_weights off)",
        ),
        (
            "KV cache",
            est.kv_cache,
            f"{s.batch_size} rows x {max(s.prompt_buckets)} prompt + {new_token_cap(s.max_new_tokens)} new"
            + (f", growing by {s.cache_growth}" if s.cache_growth else ""),
        ),
        (
            "generation",
            est.generate_total,
            _generation_note(est, cfg),
        ),
    ]
    lines = [f"  memory per device on mesh {mesh}:"]
    for name, value, note in what:
        lines.append(f"  {name:>16} {_size(value):>10}  {note}")
    return "\n".join(lines)


def _generation_note(est: MemoryEstimate, cfg: Config) -> str:
    s = cfg.sampler
    where = f", on sampler.mesh {axes_text(est.generate_mesh)}" if s.mesh else ""
    return "total" + where + (f", each of {s.replicas} replicas" if s.replicas > 1 else "")


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
