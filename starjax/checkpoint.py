"""Every Orbax call in starjax lives here, so an Orbax API change is a one-file change.

Model parameters are saved as a plain nested dict of arrays (`nnx.to_pure_dict`) and restored
straight into the sharded layout of the *current* mesh, whatever mesh wrote them.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp
from flax import nnx

from starjax.config import ModelConfig
from starjax.model.transformer import Transformer, abstract_model
from starjax.sharding import AxisRules


def save_params(directory: str | Path, model: Transformer) -> Path:
    """Writes the model's parameters to DIRECTORY (which must not exist yet); returns its path."""
    path = Path(directory).absolute()
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, nnx.to_pure_dict(nnx.state(model)))
        ckptr.wait_until_finished()
    return path


def restore_params(directory: str | Path, cfg: ModelConfig, rules: AxisRules) -> Transformer:
    """The model of `cfg`, with parameters read from DIRECTORY onto `rules.mesh`."""
    path = Path(directory).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found")
    graphdef, state = nnx.split(abstract_model(cfg, rules))
    shardings = nnx.to_pure_dict(nnx.get_named_sharding(state, rules.mesh))
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), nnx.to_pure_dict(state), shardings
    )
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(path, target)
    except (ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint {str(path)!r} does not match the configured model: {first}") from None
    nnx.replace_by_pure_dict(state, restored)
    return nnx.merge(graphdef, state)
