"""Every Orbax call in starjax lives here, so an Orbax API change is a one-file change.

Model parameters are saved as a plain nested dict of arrays (`nnx.to_pure_dict`), one entry per
layer whatever `model.scan_layers` is, and restored straight into the sharded layout of the
*current* mesh, whatever mesh wrote them.
"""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from starjax import multihost
from starjax.model.transformer import Transformer, abstract_model, relayout, stack_layer_dicts
from starjax.schema import ModelConfig
from starjax.sharding import AxisRules


def save_params(directory: str | Path, model: Transformer, overwrite: bool = False) -> Path:
    """Writes the model's parameters to DIRECTORY; returns its path.

    With `overwrite`, an existing DIRECTORY is replaced only once the new one is complete, so a
    kill at any moment leaves either the old or the new parameters.
    """
    path = Path(directory).absolute()
    target = path.with_name(path.name + ".partial") if overwrite else path
    # Every process writes its own shards; only process 0 moves directories, between barriers.
    if overwrite and multihost.is_lead() and target.exists():
        shutil.rmtree(target)
    multihost.barrier(f"save {path.name}: cleared")
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(target, stack_layer_dicts(nnx.to_pure_dict(nnx.state(model)), scan=False))
        ckptr.wait_until_finished()
    if overwrite:
        multihost.barrier(f"save {path.name}: written")
        if multihost.is_lead():
            if path.exists():
                shutil.rmtree(path)
            target.rename(path)
        multihost.barrier(f"save {path.name}: in place")
    return path


def restore_params(directory: str | Path, cfg: ModelConfig, rules: AxisRules) -> Transformer:
    """The model of `cfg`, with parameters read from DIRECTORY onto `rules.mesh`."""
    path = Path(directory).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found")
    per_layer = dataclasses.replace(cfg, scan_layers=False)
    graphdef, state = nnx.split(abstract_model(per_layer, rules))
    shardings = nnx.to_pure_dict(nnx.get_named_sharding(state, rules.mesh))
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), nnx.to_pure_dict(state), shardings)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(path, target)
    except (ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"checkpoint {str(path)!r} does not match the configured model: {first}") from None
    nnx.replace_by_pure_dict(state, restored)
    return relayout(nnx.merge(graphdef, state), cfg)


class TrainCheckpoints:
    """Periodic train-state checkpoints in DIRECTORY/<step>: state + JSON metadata.

    Saving is asynchronous (training continues while Orbax writes) and atomic (a step directory
    appears only once finalized), the last `keep` are kept, and restore walks back from the
    newest step past any damaged checkpoint.
    """

    def __init__(self, directory: str | Path, keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def restore_latest(self, like: Any) -> tuple[int, Any, dict] | None:
        """(step, state, meta) of the newest readable checkpoint, or None when there is none.

        `like` is a state with the target shardings (e.g. a freshly initialised one).
        """
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
        found = _restore_newest(self._manager, self.directory, args)
        return None if found is None else (found[0], found[1]["state"], dict(found[1]["meta"]))

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


class StateCheckpoints:
    """Small JSON states (a run's position and bookkeeping) in DIRECTORY/<step>, written
    synchronously and atomically; restore falls back past a damaged newest one."""

    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: dict) -> None:
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.JsonSave(state)), force=True)
        self._manager.wait_until_finished()

    def restore_latest(self) -> dict | None:
        found = _restore_newest(self._manager, self.directory, ocp.args.Composite(state=ocp.args.JsonRestore()))
        return None if found is None else dict(found[1]["state"])

    def close(self) -> None:
        self._manager.close()


def _restore_newest(manager: ocp.CheckpointManager, directory: Path, args: Any) -> tuple[int, Any] | None:
    """(step, restored items) of the newest readable step, walking back past damaged ones with a warning."""
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            return step, manager.restore(step, args=args)
        except Exception as e:  # a damaged checkpoint: any read error, from any layer
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            warnings.warn(f"checkpoint step {step} in {directory} is unreadable ({reason}); trying an older one", stacklevel=2)
    return None
