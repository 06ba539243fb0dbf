"""Extension points registered by name: tasks, rollouts, scorers and selectors.

A plugin is a module that registers with a decorator; its settings are a dataclass registered
beside it, which becomes the config section `<section>.<name>` (e.g. `task.addition`,
`selection.cap`). Built-in plugins are the modules of `starjax.tasks` and `starjax.star.plugins`,
found by listing the packages; others are named in the config's `plugins` list (or installed
under the `starjax.plugins` entry-point group) and imported before the config is built, so
adding one is one new file and no edit anywhere else.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from starjax.errors import ConfigError

BUILTIN_PACKAGES = ("starjax.tasks", "starjax.star.plugins")
ENTRY_POINT_GROUP = "starjax.plugins"


@dataclass(frozen=True)
class Entry:
    name: str
    build: Callable[..., Any]
    config: type | None  # dataclass of its settings: the config section named after it, or None


class Registry:
    def __init__(self, kind: str, section: str):
        self.kind, self.section = kind, section  # section: where its entries' settings live in the config
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config: type | None = None) -> Callable:
        """Decorator for a factory (or class) that builds the `name` plugin."""

        def add(build: Callable) -> Callable:
            old = self._entries.get(name)
            if old is not None and old.build.__module__ != build.__module__:
                raise ConfigError(f"{self.kind} {name!r} is registered twice ({old.build.__module__}, {build.__module__})")
            self._entries[name] = Entry(name, build, config)
            return build

        return add

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{self.section}: unknown {self.kind} {name!r}; choose one of {sorted(self._entries)}{hint}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def configs(self) -> dict[str, type]:
        return {n: e.config for n, e in sorted(self._entries.items()) if e.config is not None}


TASKS = Registry("task", "task.name")
ROLLOUTS = Registry("rollout", "star.rollout")
SCORERS = Registry("scorer", "star.scorers")
SELECTORS = Registry("selector", "star.selectors")


def import_function(spec: str, what: str) -> Callable:
    """The callable `package.module:function` names; `what` says what it is for the error
    ("verifier", "scorer")."""
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import {what} {spec!r}: {e}") from None
    if not callable(fn):
        raise ConfigError(f"{what} {spec!r} is not callable")
    return fn


_builtins_loaded = False


def load_plugins(modules: Sequence[str] = ()) -> None:
    """Imports the built-in plugin modules, installed entry points, and `modules` (the config's `plugins`)."""
    global _builtins_loaded
    if not _builtins_loaded:
        _load_builtins()
        _builtins_loaded = True
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"plugins: cannot import {name!r} ({e}); is it on PYTHONPATH?") from None


def _load_builtins() -> None:
    for package in BUILTIN_PACKAGES:
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package}.{info.name}")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
