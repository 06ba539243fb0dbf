"""Loading a run configuration: schema defaults <- model preset <- YAML file <- `key=value`
overrides from the command line <- the architecture of model.from_hf's config.json.

The schema is starjax/schema.py plus one section per registered plugin that has settings
(`task.addition`, `selection.cap`, ...): plugins named in `plugins` are imported first, so their
sections exist before the file and overrides are merged. OmegaConf does the loading, merging and
type conversion; this module turns its exceptions into one-line messages a person can act on.
The result is frozen: derived values (the tokenizer's vocab size) go through `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from dataclasses import field, make_dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from starjax.errors import ConfigError
from starjax.hf.config import hf_architecture_layer
from starjax.model.presets import PRESETS
from starjax.registry import ROLLOUTS, SCORERS, SELECTORS, TASKS, load_plugins
from starjax.schema import Config, ScoringConfig, SelectionConfig, TaskConfig
from starjax.validation import validate


def _schema(plugins: tuple[str, ...]) -> type:
    """Config with a section per registered task, scorer and selector that has settings."""
    load_plugins(plugins)
    return _schema_of(tuple(TASKS.configs().items()), tuple(SCORERS.configs().items()), tuple(SELECTORS.configs().items()))


@functools.cache  # one class per set of sections: configs loaded alike compare equal
def _schema_of(tasks: tuple, scorers: tuple, selectors: tuple) -> type:
    def section(base: type, configs: dict[str, type]) -> type:
        fields = [(name, cls, field(default_factory=cls)) for name, cls in configs.items()]
        return make_dataclass(base.__name__, fields, bases=(base,), frozen=True)

    task, scoring, selection = (
        section(TaskConfig, dict(tasks)),
        section(ScoringConfig, dict(scorers)),
        section(SelectionConfig, dict(selectors)),
    )
    return make_dataclass(
        "Config",
        [
            ("task", task, field(default_factory=task)),
            ("scoring", scoring, field(default_factory=scoring)),
            ("selection", selection, field(default_factory=selection)),
        ],
        bases=(Config,),
        frozen=True,
    )


def default_config(plugins: Sequence[str] = ()) -> Config:
    """The schema's defaults, built-in plugin sections included."""
    return _schema(tuple(plugins))()


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Builds a validated, frozen Config from an optional YAML file and `key=value` overrides."""
    file_cfg = _load_yaml(path) if path is not None else OmegaConf.create({})
    cli_cfg = _parse_overrides(overrides)
    given = OmegaConf.merge(file_cfg, cli_cfg)
    plugins = OmegaConf.select(given, "plugins", default=None)
    plugins = OmegaConf.to_container(plugins) if OmegaConf.is_list(plugins) else plugins or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError("plugins must be a list of module names, e.g. plugins=[my_package.my_task]")
    schema = _schema(tuple(plugins))
    layers = [OmegaConf.structured(schema)]
    preset = OmegaConf.select(given, "model.preset", default=None)
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"model.preset={preset!r} is unknown; choose one of {sorted(PRESETS)}")
        layers.append(OmegaConf.create({"model": PRESETS[preset]}))
    from_hf = OmegaConf.select(given, "model.from_hf", default=None)
    # the checkpoint's config.json decides the shape: its layer goes over the file and overrides
    hf_layer = [OmegaConf.create({"model": hf_architecture_layer(from_hf)})] if from_hf is not None else []
    try:
        merged = OmegaConf.merge(*layers, file_cfg, cli_cfg, *hf_layer)
        cfg = typing.cast(Config, OmegaConf.to_object(merged))
    except ConfigKeyError as e:
        raise ConfigError(_unknown_key_message(e.full_key, schema)) from None
    except ValidationError as e:
        raise ConfigError(_type_message(e, schema)) from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid config: {e.msg}") from None
    validate(cfg)
    _check_plugins(cfg)
    return cfg


def _check_plugins(cfg: Config) -> None:
    """The chosen task, rollout, scorers and selectors exist; every task checks its settings, the
    scorers and selectors in use check theirs."""
    TASKS.get(cfg.task.name)
    ROLLOUTS.get(cfg.star.rollout)
    if not cfg.star.scorers:
        raise ConfigError("star.scorers is empty; give at least one (answer: the task's own verifier)")
    for name in cfg.star.scorers:
        if ":" not in name:  # module:function scorers are imported when the run starts
            SCORERS.get(name)
    for name in cfg.star.selectors:
        SELECTORS.get(name)
    # every task's section: a typo fails even in another task's
    sections = [getattr(cfg.task, f.name) for f in dataclasses.fields(cfg.task) if f.name not in ("name", "data_dir")]
    sections += [getattr(cfg.scoring, n, None) for n in cfg.star.scorers if ":" not in n]
    sections += [getattr(cfg.selection, n, None) for n in cfg.star.selectors]
    for options in sections:
        if hasattr(options, "check"):
            options.check(cfg)


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Config, run_dir: str | Path) -> Path:
    """Writes the resolved config to RUN_DIR/config.yaml (every run keeps its config)."""
    out = Path(run_dir) / "config.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_yaml(cfg))
    return out


def _load_yaml(path: str | Path, seen: tuple = ()) -> Any:
    """A YAML file's keys; `include: OTHER.yaml` (relative to this file) is loaded first and
    overridden by this file, so a recipe can be a few lines on top of another."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found")
    if p.resolve() in seen:
        raise ConfigError(f"{str(p)!r} includes itself")
    try:
        cfg = OmegaConf.load(p)
    except Exception as e:  # yaml.YAMLError and friends: report, never trace
        raise ConfigError(f"cannot parse {str(p)!r}: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, typing.Mapping) and not OmegaConf.is_dict(cfg):
        raise ConfigError(f"{str(p)!r} must hold a mapping of config keys")
    include = cfg.pop("include", None)
    if include is None:
        return cfg
    if not isinstance(include, str):
        raise ConfigError(f"include: in {str(p)!r} must name one YAML file")
    return OmegaConf.merge(_load_yaml(p.parent / include, (*seen, p.resolve())), cfg)


def _parse_overrides(overrides: Sequence[str]) -> Any:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} must look like key.sub=value (e.g. model.num_layers=2)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot parse overrides: {e.msg}") from None


def _all_keys(cls: type, prefix: str = "") -> List[str]:
    """Every dotted key of the schema, sections included."""
    keys = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        ftype = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(ftype):
            keys.append(key)
            keys.extend(_all_keys(ftype, key + "."))
        else:
            keys.append(key)
    return keys


def _field_type(full_key: str, schema: type) -> Any:
    cls: Any = schema
    for part in full_key.split("."):
        if typing.get_origin(cls) in (dict, Dict):
            cls = typing.get_args(cls)[1]
            continue
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return None
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return None
        cls = hints[part]
    return cls


def _unknown_key_message(full_key: str, schema: type) -> str:
    close = difflib.get_close_matches(full_key, _all_keys(schema), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else "; run `starjax info` to list valid keys"
    return f"unknown config key {full_key!r}{hint}"


def _type_name(t: Any) -> str:
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if typing.get_origin(t) is typing.Union and len(args) == 1:
        return f"{_type_name(args[0])} or null"
    if typing.get_origin(t) in (list, List):
        return f"list of {_type_name(args[0])}"
    if typing.get_origin(t) in (dict, Dict):
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    return getattr(t, "__name__", str(t))


def _type_message(e: ValidationError, schema: type) -> str:
    if not e.full_key:
        return f"invalid config: {(e.msg or str(e) or 'a section was given a plain value').splitlines()[0]}"
    key = e.full_key
    expected = _field_type(key, schema)
    value = getattr(e, "value", None)
    if expected is None:
        return f"invalid value for {key}: {e.msg}"
    return f"{key}={value!r} has the wrong type: expected {_type_name(expected)}"
