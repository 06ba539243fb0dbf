"""The model STaR starts from: given parameters (star.base), a short pre-training stage on the
task's seed data (pretrain.steps > 0), or a random init (smoke tests only).

Pre-training is a resumable phase of its own: its train state is checkpointed under
RUN_DIR/pretrain/ and the result saved to RUN_DIR/base/, which later runs reuse. An optional
warm start on the gold targets comes first (RUN_DIR/pretrain_warm/, then RUN_DIR/warm/).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable

from flax import nnx

from starjax import multihost
from starjax.checkpoint import save_params
from starjax.errors import ConfigError
from starjax.model.transformer import Transformer
from starjax.run_dir import RunDir
from starjax.sampling.engine import SharedSampler
from starjax.schema import Config
from starjax.sharding import AxisRules
from starjax.sources import load_model
from starjax.star.evaluate import difficulty_key, evaluate
from starjax.star.protocols import Rollout
from starjax.tasks.base import Problem, Splits, Task
from starjax.tokenizer import Tokenizer
from starjax.training.data import tokenize_records
from starjax.training.fit import NonFiniteLoss, StepHook, fit, with_steps


def base_model(
    cfg: Config,
    rules: AxisRules,
    task: Task,
    rollout: Rollout,
    splits: Splits,
    tokenizer: Tokenizer,
    run_dir: RunDir,
    log: Callable[[str], None],
    sampler: SharedSampler | None = None,
) -> Transformer:
    """The base model; pre-training's checks (pretrain.stop_difficulty) sample with `sampler`
    (default: one of their own)."""
    if cfg.star.base is not None:
        return load_model(cfg.star.base, cfg.model, rules, cfg.seed)
    if cfg.pretrain.steps == 0:
        log(f"no star.base and pretrain.steps=0: starting from {cfg.model.from_hf or 'a randomly initialised model'}")
        return load_model(None, cfg.model, rules, cfg.seed)
    if run_dir.base.is_dir():
        return load_model(run_dir.base, cfg.model, rules, cfg.seed)
    p = cfg.pretrain
    model = load_model(None, cfg.model, rules, cfg.seed)
    lead = multihost.is_lead()
    sync = run_dir.sync if lead else None

    def stage(records: list[dict], steps: int, learning_rate: float, name: str, desc: str, **hook) -> Transformer:
        ckpts = run_dir.pretrain_checkpoints(name)
        return pretrain(
            cfg, model, rollout.training_records(records), tokenizer, steps, learning_rate, ckpts, desc, log, sync, **hook
        )

    if p.warm_steps:
        if run_dir.warm.is_dir():
            model = load_model(run_dir.warm, cfg.model, rules, cfg.seed)
        else:
            model = stage(
                task.gold_records(splits), p.warm_steps, p.warm_learning_rate or p.learning_rate, "pretrain_warm", "warm start"
            )
            save_params(run_dir.warm, model, overwrite=True)  # the stage is done: a restart goes on from here
            if lead:
                shutil.rmtree(run_dir.pretrain_checkpoints("pretrain_warm"), ignore_errors=True)
                run_dir.sync()
    hook, stop = {}, None
    if p.stop_difficulty is not None:
        stop = SkillStop(cfg, task, rollout, model, splits.train, tokenizer, run_dir.below, log, sampler)
        hook = {"on_step": stop, "every": p.stop_every}
    model = stage(task.seed_records(splits), p.steps, p.learning_rate, "pretrain", "pre-train", **hook)
    if stop is not None and stop.reached and p.stop_before:
        model = load_model(run_dir.below, cfg.model, rules, cfg.seed)
    save_params(run_dir.base, model, overwrite=True)
    if lead:
        shutil.rmtree(run_dir.pretrain_checkpoints("pretrain"), ignore_errors=True)
        shutil.rmtree(run_dir.warm, ignore_errors=True)
        shutil.rmtree(run_dir.below, ignore_errors=True)
        run_dir.sync()
    return model


def pretrain(
    cfg: Config,
    model: Transformer,
    records: list[dict],
    tokenizer: Tokenizer,
    steps: int,
    learning_rate: float,
    ckpt_dir: Path | None,
    desc: str,
    log: Callable[[str], None],
    on_save: Callable[[], None] | None,
    on_step: StepHook | None = None,
    every: int = 0,
) -> Transformer:
    """`model` after `steps` resumable steps (cosine from `learning_rate`) on `records`; `on_step`
    watches the weights as they train, each `every` steps those of that step exactly, and may
    stop training there (SkillStop; scripts/pretrain_trace.py)."""
    p = cfg.pretrain
    seq_len = p.seq_len or cfg.train.seq_len
    examples, skipped = tokenize_records(records, tokenizer, seq_len)
    if not examples:
        raise ConfigError(f"{desc}: the task gave no usable records (skipped: {skipped}); set star.base or pretrain.steps=0")
    log(
        f"{desc}: {steps} steps on {len(examples)} examples"
        + (f" (skipped {sum(skipped.values())}: {skipped})" if sum(skipped.values()) else "")
    )
    tcfg = with_steps(
        dataclasses.replace(
            cfg.train,
            learning_rate=learning_rate,
            schedule="cosine",
            batch_size=p.batch_size or cfg.train.batch_size,
            seq_len=seq_len,
            warmup_steps=p.warmup_steps,
            eval_every=every,
        ),
        steps,
    )
    try:
        return fit(model, examples, tcfg, cfg.seed, ckpt_dir=ckpt_dir, desc=desc, on_save=on_save, on_step=on_step).model
    except NonFiniteLoss as e:
        raise ConfigError(str(e)) from None


def greedy_accuracy(
    cfg: Config,
    task: Task,
    rollout: Rollout,
    model: Transformer,
    tokenizer: Tokenizer,
    sampler: SharedSampler | None = None,
) -> Callable[[nnx.State, list[Problem]], dict]:
    """evaluate()'s greedy metrics of weights for `model`'s graph on given questions, from one
    sampler updated with each call's weights: its programs compile once."""
    greedy = dataclasses.replace(cfg.star, eval_samples=1)
    graphdef, _ = nnx.split(model)
    sampler = sampler or SharedSampler(tokenizer, cfg.sampler)

    def accuracy(params: nnx.State, problems: list[Problem]) -> dict:
        return evaluate(task, rollout, sampler(nnx.merge(graphdef, params)), problems, greedy, cfg.seed)

    return accuracy


class SkillStop:
    """A hook for pretrain(..., every=pretrain.stop_every) that stops `model`'s pre-training once
    greedy accuracy on the first pretrain.stop_questions training questions of difficulty
    pretrain.stop_difficulty reaches pretrain.stop_accuracy. Training questions, not test ones:
    no choice the run makes looks at the test split. With pretrain.stop_before it writes each
    check's weights below the bar to `below`, so the check before the one that reaches it is
    there to start from, across a resumed pre-training too (its checks see the same weights)."""

    def __init__(
        self,
        cfg: Config,
        task: Task,
        rollout: Rollout,
        model: Transformer,
        train: list[Problem],
        tokenizer: Tokenizer,
        below: Path,
        log: Callable[[str], None],
        sampler: SharedSampler | None = None,
    ) -> None:
        p = self.p = cfg.pretrain
        self.questions = [q for q in train if q.difficulty == p.stop_difficulty][: p.stop_questions]
        if not self.questions:
            have = sorted({q.difficulty for q in train}, key=difficulty_key)
            raise ConfigError(f"pretrain.stop_difficulty={p.stop_difficulty!r}: no training question has it (they have {have})")
        self.measure = greedy_accuracy(cfg, task, rollout, model, tokenizer, sampler)
        self.graphdef, _ = nnx.split(model)
        self.below, self.log = below, log
        self.reached = False

    def __call__(self, done: int, metrics: dict, params: Callable[[], nnx.State]) -> bool:
        p = self.p
        if done % p.stop_every or done == p.steps:
            return False
        accuracy = self.measure(params(), self.questions)["test_accuracy"]
        self.reached = accuracy >= p.stop_accuracy
        line = (
            f"pre-train step {done}: {accuracy:.3f} on {len(self.questions)} training questions of difficulty {p.stop_difficulty}"
        )
        if not self.reached:
            self.log(line)
            if p.stop_before:
                save_params(self.below, nnx.merge(self.graphdef, params()), overwrite=True)
            return False
        if not p.stop_before:
            self.log(f"{line} >= {p.stop_accuracy}: stopping here")
            return True
        if done == p.stop_every:
            raise ConfigError(
                f"pretrain.stop_before: the first check (step {done}) already reaches pretrain.stop_accuracy="
                f"{p.stop_accuracy} on difficulty {p.stop_difficulty}, so no weights below it were kept; "
                "lower pretrain.stop_every or raise pretrain.stop_accuracy"
            )
        self.log(f"{line} >= {p.stop_accuracy}: stopping; the base is step {done - p.stop_every}'s, the last check below it")
        return True
