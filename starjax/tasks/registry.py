"""`make_task(cfg)`: the registered task cfg.task.name names, built from its config section.

A task registers with `@TASKS.register(name, config=ItsConfig)` (starjax/registry.py) on a class
with a `from_config(cfg)` classmethod or on a function `(cfg) -> Task`. Everything that can be
wrong in its settings (verifier, files) fails here, before any compute.
"""

from __future__ import annotations

from starjax.registry import TASKS, load_plugins
from starjax.schema import Config
from starjax.tasks.base import Task


def make_task(cfg: Config) -> Task:
    """The task cfg.task.name names, configured (its verifier resolved, its files checked)."""
    load_plugins(cfg.plugins)
    build = TASKS.get(cfg.task.name).build
    task = build.from_config(cfg) if isinstance(build, type) else build(cfg)
    if cfg.task.chat_template:
        from starjax.sources import load_chat_template

        task.chat = load_chat_template(cfg)
    return task
