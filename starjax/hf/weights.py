"""Hugging Face safetensors <-> starjax parameters.

Import reads one tensor at a time with `safetensors` and builds each parameter directly in its
sharded layout: every device's block is sliced out of the file (`get_slice`, memory-mapped), so
no host ever holds a whole model, and a model larger than one device loads. Export writes the
parameters back as Hugging Face tensors (sharded files with an index past `max_shard_bytes`).

Each parameter is a relayout of one Hugging Face tensor: reshape the tensor (splitting fused
head dimensions) then transpose. `Layout` records that, and both directions use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import numpy as np
from flax import nnx

from starjax import multihost
from starjax.errors import ConfigError
from starjax.model.layers import head_dim_of
from starjax.model.transformer import Transformer, abstract_model, relayout, stack_layer_dicts
from starjax.schema import ModelConfig
from starjax.sharding import AxisRules


@dataclass(frozen=True)
class Layout:
    """ours = hf.reshape(flatten(groups)).transpose(perm); groups[i] splits Hugging Face dim i."""

    groups: tuple[tuple[int, ...], ...]
    perm: tuple[int, ...]

    @property
    def hf_shape(self) -> tuple[int, ...]:
        return tuple(math.prod(g) for g in self.groups)

    def to_ours(self, hf: np.ndarray) -> np.ndarray:
        return hf.reshape([n for g in self.groups for n in g]).transpose(self.perm)

    def to_hf(self, ours: np.ndarray) -> np.ndarray:
        return ours.transpose(np.argsort(self.perm)).reshape(self.hf_shape)

    def read_block(
        self, get: Callable[[tuple[slice, ...]], np.ndarray], index: tuple[slice, ...], shape: tuple[int, ...]
    ) -> np.ndarray:
        """Our block `index` (as jax asks per device), reading only the rows it needs: a split
        group is read as the contiguous range of its leading dim, then narrowed."""
        split = [None] * len(self.perm)
        for i, s in enumerate(index):
            split[self.perm[i]] = slice(*s.indices(shape[i])[:2])
        hf_index, narrow, pos = [], [], 0
        for g in self.groups:
            lead, rest = split[pos], split[pos + 1 : pos + len(g)]
            inner = math.prod(g[1:])
            hf_index.append(slice(lead.start * inner, lead.stop * inner))
            narrow += [slice(None)] + list(rest)
            pos += len(g)
        block = np.asarray(get(tuple(hf_index)))
        sizes = []
        for g, s in zip(self.groups, hf_index):
            sizes += [(s.stop - s.start) // math.prod(g[1:]), *g[1:]]
        return block.reshape(sizes)[tuple(narrow)].transpose(self.perm)


def tensor_layouts(cfg: ModelConfig) -> dict[str, tuple[tuple, Layout]]:
    """Hugging Face tensor name -> (our parameter path, layout), for every parameter of `cfg`."""
    e, h, k, d, f, v = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, head_dim_of(cfg), cfg.mlp_dim, cfg.vocab_size
    same = lambda *shape: Layout(tuple((n,) for n in shape), tuple(range(len(shape))))  # noqa: E731
    out: dict[str, tuple[tuple, Layout]] = {
        "model.embed_tokens.weight": (("embed",), same(v, e)),
        "model.norm.weight": (("final_norm", "scale"), same(e)),
    }
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = (("lm_head",), Layout(((v,), (e,)), (1, 0)))
    for i in range(cfg.num_layers):
        p, b = f"model.layers.{i}.", ("blocks", i)
        for name, heads in (("q", h), ("k", k), ("v", k)):
            out[f"{p}self_attn.{name}_proj.weight"] = ((*b, "attn", name), Layout(((heads, d), (e,)), (2, 0, 1)))
            if cfg.qkv_bias:
                out[f"{p}self_attn.{name}_proj.bias"] = ((*b, "attn", f"{name}_bias"), Layout(((heads, d),), (0, 1)))
        out[f"{p}self_attn.o_proj.weight"] = ((*b, "attn", "o"), Layout(((e,), (h, d)), (1, 2, 0)))
        out[f"{p}mlp.gate_proj.weight"] = ((*b, "mlp", "gate"), Layout(((f,), (e,)), (1, 0)))
        out[f"{p}mlp.up_proj.weight"] = ((*b, "mlp", "up"), Layout(((f,), (e,)), (1, 0)))
        out[f"{p}mlp.down_proj.weight"] = ((*b, "mlp", "down"), Layout(((e,), (f,)), (1, 0)))
        out[f"{p}input_layernorm.weight"] = ((*b, "attn_norm", "scale"), same(e))
        out[f"{p}post_attention_layernorm.weight"] = ((*b, "mlp_norm", "scale"), same(e))
    return out


@contextlib.contextmanager
def open_weights(path: Path) -> Iterator[Any]:
    """`safe_open(path)`; a truncated or corrupt file is a one-line usage error, not a traceback."""
    from safetensors import SafetensorError, safe_open

    try:
        st = safe_open(path, framework="flax")
    except (SafetensorError, OSError) as e:
        raise ConfigError(
            f"{str(path)!r} is not a readable safetensors file ({e}); is it truncated? download or export it again"
        ) from None
    with st:
        yield st


def weight_files(directory: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (single file, or sharded with an index)."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(f"cannot read {str(index)!r}: {e}") from None
        missing = sorted({f for f in weight_map.values() if not (directory / f).is_file()})
        if missing:
            raise ConfigError(f"{str(directory)!r} lacks shard files named in its index: {', '.join(missing[:3])}")
        return {name: directory / f for name, f in weight_map.items()}
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        if list(directory.glob("*.bin")) or list(directory.glob("*.pt")) or list(directory.glob("*.pth")):
            raise ConfigError(
                f"{str(directory)!r} has only PyTorch pickle weights (.bin/.pt), which starjax never "
                "unpickles; convert them to safetensors first (transformers: "
                "model.save_pretrained(out, safe_serialization=True))"
            )
        raise ConfigError(f"{str(directory)!r} has no *.safetensors weights")
    out: dict[str, Path] = {}
    for f in files:
        with open_weights(f) as st:
            out.update({name: f for name in st.keys()})
    return out


def import_params(directory: str | Path, cfg: ModelConfig, rules: AxisRules) -> Transformer:
    """The model of `cfg` (from the checkpoint's config.json) with the checkpoint's weights, each
    parameter placed straight into its sharding on `rules.mesh` and cast to `cfg.param_dtype`."""
    d = Path(directory).expanduser()
    files = weight_files(d)
    layouts = tensor_layouts(cfg)
    missing = [name for name in layouts if name not in files]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ConfigError(f"{str(d)!r} lacks tensors {', '.join(missing[:3])}{more} that its config.json implies")
    unused = [
        n
        for n in files
        if n not in layouts and not n.endswith("rotary_emb.inv_freq") and not (cfg.tie_embeddings and n == "lm_head.weight")
    ]
    if unused:
        warnings.warn(
            f"{len(unused)} tensors of {d} are not used by the {cfg.num_layers}-layer model, e.g. {unused[0]}", stacklevel=2
        )

    graphdef, state = nnx.split(abstract_model(dataclasses.replace(cfg, scan_layers=False), rules))  # the files' layout
    shardings = nnx.to_pure_dict(nnx.get_named_sharding(state, rules.mesh))
    shapes = nnx.to_pure_dict(state)
    dtype = np.dtype(jax.numpy.dtype(cfg.param_dtype))
    values: dict = {}
    cpu = jax.local_devices(backend="cpu")[0]  # slices land in host memory whatever the platform
    for name, (path, layout) in layouts.items():
        sharding = _at(shardings, path)
        shape = tuple(_at(shapes, path).shape)
        with open_weights(files[name]) as st, jax.default_device(cpu):
            sl = st.get_slice(name)
            if tuple(sl.get_shape()) != layout.hf_shape:
                raise ConfigError(f"tensor {name} has shape {tuple(sl.get_shape())}, but config.json implies {layout.hf_shape}")
            array = _read_sharded(sl, layout, shape, sharding, dtype)
        _set(values, path, array)
    nnx.replace_by_pure_dict(state, values)
    return relayout(nnx.merge(graphdef, state), cfg)


def _read_sharded(sl: Any, layout: Any, shape: tuple, sharding: Any, dtype: np.dtype) -> jax.Array:
    """One tensor as a global array; devices that replicate a block share one read of it."""
    blocks: dict[tuple, np.ndarray] = {}

    def block(index: tuple[slice, ...]) -> np.ndarray:
        key = tuple(s.indices(n)[:2] for s, n in zip(index, shape))
        if key not in blocks:
            blocks[key] = layout.read_block(lambda ix: sl[ix], index, shape).astype(dtype)
        return blocks[key]

    return jax.make_array_from_callback(shape, sharding, block)


def _at(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def hf_tensors(model: Transformer, dtype: str) -> Iterator[tuple[str, np.ndarray]]:
    """(Hugging Face name, host array in `dtype`) for each parameter, one at a time."""
    params = stack_layer_dicts(nnx.to_pure_dict(nnx.state(model)), scan=False)
    np_dtype = np.dtype(jax.numpy.dtype(dtype))
    for name, (path, layout) in tensor_layouts(model.cfg).items():
        host = np.asarray(multihost.to_host(_at(params, path)))  # collective across processes
        yield name, np.ascontiguousarray(layout.to_hf(host.astype(np_dtype)))


def export_weights(model: Transformer, out: Path, dtype: str, max_shard_bytes: int) -> list[str]:
    """Writes model.safetensors, or model-0000i-of-0000n.safetensors + index past max_shard_bytes;
    returns the file names. Every process gathers each tensor; process 0 writes."""
    from safetensors.flax import save_file

    shards: list[dict[str, np.ndarray]] = [{}]
    size = total = 0
    files, weight_map = [], {}

    write = multihost.is_lead()

    def flush() -> None:
        name = f"shard-{len(files)}.tmp"
        with jax.default_device(jax.local_devices(backend="cpu")[0]):
            if write:
                save_file({k: jax.numpy.asarray(v) for k, v in shards[-1].items()}, str(out / name), metadata={"format": "pt"})
        files.append((name, list(shards[-1])))
        shards[-1] = {}

    for name, array in hf_tensors(model, dtype):
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            flush()
            size = 0
        shards[-1][name] = array
        size += array.nbytes
        total += array.nbytes
    flush()
    n = len(files)
    names = []
    for i, (tmp, tensors) in enumerate(files, 1):
        final = "model.safetensors" if n == 1 else f"model-{i:05d}-of-{n:05d}.safetensors"
        if write:
            (out / tmp).rename(out / final)
        weight_map.update({t: final for t in tensors})
        names.append(final)
    if n > 1 and write:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return names


def replace_dir(tmp: Path, out: Path) -> None:
    """Moves a finished `tmp` to `out`, so a killed export never leaves a half directory at `out`."""
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
