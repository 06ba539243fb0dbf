"""Everything a STaR run checks and loads before its loop: the task and its plugins, the run
directory's config, the data splits, the tokenizer, and which prompts fit the sampler's buckets."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf

from starjax import multihost, storage
from starjax.config import default_config, to_yaml
from starjax.errors import ConfigError
from starjax.registry import ROLLOUTS, SELECTORS
from starjax.run_dir import RunDir
from starjax.schema import Config
from starjax.sentencepiece_tokenizer import train_tokenizer
from starjax.sources import load_run_tokenizer, with_vocab
from starjax.star.plugins.scorers import build_scorers
from starjax.star.protocols import Context, Rollout, Scorer, Selector
from starjax.tasks.base import Problem, Splits, Task
from starjax.tasks.registry import make_task
from starjax.tokenizer import Tokenizer

# Keys a finished or stopped run may change and still resume: more iterations, display, and
# where it runs (process count, devices, mesh sizes: checkpoints restore onto any mesh).
RESUMABLE_CHANGES = {"star.iterations", "sampler.progress", "mesh.data", "mesh.fsdp", "mesh.tensor"}
RESUMABLE_PREFIXES = ("runtime.",)


@dataclass(frozen=True)
class Plugins:
    rollout: Rollout
    scorers: dict[str, Scorer]  # star.scorers in order: the first one's verdict is a sample's
    selectors: list[Selector]


def build_plugins(ctx: Context) -> Plugins:
    """star.rollout, star.scorers and star.selectors, built (each checks what it needs of the task)."""
    s = ctx.cfg.star
    rollout = ROLLOUTS.get(s.rollout).build(ctx)
    return Plugins(rollout, build_scorers(ctx, s.scorers), [SELECTORS.get(n).build(ctx) for n in s.selectors])


@dataclass
class RunSetup:
    cfg: Config  # with model.vocab_size filled in once the tokenizer is loaded
    task: Task
    config_yaml: str
    run_dir: RunDir
    splits: Splits | None = None
    tokenizer: Tokenizer | None = None
    train: list[Problem] = field(default_factory=list)
    test: list[Problem] = field(default_factory=list)
    hintable: set[str] = field(default_factory=set)  # train ids whose hinted prompt fits too
    skipped: dict[str, int] = field(default_factory=dict)

    def load(self, log: Callable[[str], None]) -> None:
        cfg, task = self.cfg, self.task
        # Process 0 prepares (generates, caches) the data first; the others then read what it wrote.
        if multihost.is_lead():
            self.splits = task.load()
        multihost.barrier("task data prepared")
        if not multihost.is_lead():
            self.splits = task.load()
        task.set_shots(self.splits.train)
        self.tokenizer = run_tokenizer(cfg, task, self.splits, self.run_dir)
        self.cfg = cfg = with_vocab(cfg, self.tokenizer)
        check_base_tokenizer(cfg, self.tokenizer)
        limit = max(cfg.sampler.prompt_buckets)

        def fits(text: str) -> bool:
            return len(self.tokenizer.encode(text, add_bos=True)) <= limit

        self.train = [p for p in self.splits.train if fits(task.prompt(p))]
        test = self.splits.test[: cfg.star.test_limit or None]
        self.test = [p for p in test if fits(task.prompt(p))]
        self.hintable = {p.id for p in self.train if cfg.star.rationalize and fits(task.prompt(p, hint=True))}
        self.skipped = dict(self.splits.skipped)
        long = (len(self.splits.train) - len(self.train)) + (len(test) - len(self.test))
        if long:
            self.skipped["prompt longer than the largest sampler bucket"] = long
        if cfg.star.rationalize and len(self.train) > len(self.hintable):
            self.skipped["hinted prompt too long (not rationalized)"] = len(self.train) - len(self.hintable)
        if not self.train or not self.test:
            raise ConfigError(
                f"no usable {'training' if not self.train else 'test'} problems "
                f"(skipped: {self.skipped}); check the task data or raise sampler.prompt_buckets"
            )
        log(
            f"task {task.name}: {len(self.train)} training and {len(self.test)} test problems"
            + (f"; skipped {self.skipped}" if self.skipped else "")
        )


def prepare(cfg: Config, allow_config_change: bool) -> RunSetup:
    """Builds the task and its plugins (unknown names, verifiers, files and plugins the task
    cannot serve fail here) and checks that the run directory holds this run's config, before
    any compute."""
    run_dir = RunDir.at(cfg.run_dir)
    run_dir.check()
    run_dir.pull()
    task = make_task(cfg)
    build_plugins(Context(cfg, task))
    config_yaml = to_yaml(cfg)
    saved = run_dir.config
    if saved.is_file() and not allow_config_change:
        changes = config_changes(saved.read_text(), config_yaml, cfg.plugins)
        if changes:
            keys = _flat_keys(config_yaml)  # a key only the old config has was renamed or removed since
            shown = ", ".join(f"{k}: {a} -> {b if k in keys else '(no longer a key)'}" for k, a, b in changes[:3])
            shown += " ..." if len(changes) > 3 else ""
            raise ConfigError(
                f"{cfg.run_dir} holds a run with a different config ({shown}); use another run_dir, "
                "or pass --allow-config-change to resume it with the new one"
            )
    return RunSetup(cfg, task, config_yaml, run_dir)


def _flat_keys(yaml: str) -> dict:
    def flat(node, prefix=""):
        out = {}
        for k, v in node.items():
            key = f"{prefix}{k}"
            out.update(flat(v, key + ".") if isinstance(v, dict) else {key: v})
        return out

    return flat(OmegaConf.to_container(OmegaConf.create(yaml)))


def config_changes(old_yaml: str, new_yaml: str, plugins: list[str] | tuple = ()) -> list[tuple[str, object, object]]:
    """Keys whose value differs; a key the old config lacks (a run from an older starjax) is
    compared as its default."""
    old, new = _flat_keys(old_yaml), _flat_keys(new_yaml)
    defaults = _flat_keys(to_yaml(default_config(plugins)))
    keys = sorted(set(old) | set(new))
    return [
        (k, old.get(k), new.get(k))
        for k in keys
        if old.get(k, defaults.get(k)) != new.get(k) and k not in RESUMABLE_CHANGES and not k.startswith(RESUMABLE_PREFIXES)
    ]


def run_tokenizer(cfg: Config, task: Task, splits: Splits, run_dir: RunDir) -> Tokenizer:
    """tokenizer.path (or model.from_hf's), else one trained on the task's text and kept as
    RUN_DIR/tokenizer.model."""
    if cfg.tokenizer.path is not None or cfg.model.from_hf is not None:
        return load_run_tokenizer(cfg, "star")
    tokenizer = train_tokenizer(task.texts(splits), run_dir.tokenizer_cache, **task.tokenizer_options())
    if multihost.is_lead() and not run_dir.tokenizer.exists():
        shutil.copyfile(tokenizer.source, run_dir.tokenizer)
    return tokenizer


def check_base_tokenizer(cfg: Config, tokenizer: Tokenizer) -> None:
    """A star.base from another run must be read with that run's tokenizer: a tokenizer trained on
    other task text maps the same ids to other pieces, and the model would silently read garbage."""
    if cfg.star.base is None:
        return
    theirs = f"{storage.parent(cfg.star.base)}/{RunDir.TOKENIZER}"
    theirs_file, ours = storage.local(theirs), Path(tokenizer.source)
    if theirs_file.is_file() and ours.is_file() and theirs_file.read_bytes() != ours.read_bytes():
        raise ConfigError(
            f"star.base={cfg.star.base} was trained with {theirs}, not this run's tokenizer; add tokenizer.path={theirs}"
        )
