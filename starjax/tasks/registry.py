"""The built-in tasks by name: `make_task(cfg)` builds the one cfg.task.name picks.

Each task's module is imported only when picked (the synthetic ones import TFDS). Everything
that can be wrong in the config (verifier, files) fails here, before any compute.
"""

from __future__ import annotations

from typing import Callable

from starjax.config import Config, ConfigError
from starjax.tasks.base import Task
from starjax.tasks.verifiers import get_verifier


def _addition(cfg: Config) -> Task:
    from starjax.tasks.addition import Addition

    return Addition(cfg.task.addition, cfg.task.data_dir, cfg.seed)


def _zip_chain(cfg: Config) -> Task:
    from starjax.tasks.zip_chain import ZipChain

    return ZipChain(cfg.task.zip_chain, cfg.task.data_dir, cfg.seed)


def _jsonl(cfg: Config) -> Task:
    from starjax.tasks.formats import verifier_name
    from starjax.tasks.jsonl import JsonlTask

    return JsonlTask(cfg.task.jsonl, get_verifier(verifier_name(cfg.task.jsonl)))


def _tfds(cfg: Config) -> Task:
    from starjax.tasks.formats import verifier_name
    from starjax.tasks.tfds import TfdsTask

    return TfdsTask(cfg.task.tfds, get_verifier(verifier_name(cfg.task.tfds)), cfg.data.tfds_data_dir)


BUILDERS: dict[str, Callable[[Config], Task]] = {"addition": _addition, "zip_chain": _zip_chain, "jsonl": _jsonl, "tfds": _tfds}


def make_task(cfg: Config) -> Task:
    """The task cfg.task.name names, configured (its verifier resolved, its files checked)."""
    if cfg.task.name not in BUILDERS:
        raise ConfigError(f"task.name={cfg.task.name!r} is unknown; choose one of {sorted(BUILDERS)}")
    return BUILDERS[cfg.task.name](cfg)
