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

from starjax import multihost
from starjax.checkpoint import save_params
from starjax.errors import ConfigError
from starjax.model.transformer import Transformer
from starjax.run_dir import RunDir
from starjax.schema import Config
from starjax.sharding import AxisRules
from starjax.sources import load_model
from starjax.star.protocols import Rollout
from starjax.tasks.base import Splits, Task
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
) -> Transformer:
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

    def stage(records: list[dict], steps: int, learning_rate: float, name: str, desc: str) -> Transformer:
        ckpts = run_dir.pretrain_checkpoints(name)
        return pretrain(cfg, model, rollout.training_records(records), tokenizer, steps, learning_rate, ckpts, desc, log, sync)

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
    model = stage(task.seed_records(splits), p.steps, p.learning_rate, "pretrain", "pre-train")
    save_params(run_dir.base, model, overwrite=True)
    if lead:
        shutil.rmtree(run_dir.pretrain_checkpoints("pretrain"), ignore_errors=True)
        shutil.rmtree(run_dir.warm, ignore_errors=True)
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
) -> Transformer:
    """`model` after `steps` resumable steps (cosine from `learning_rate`) on `records`; `on_step`
    watches the weights as they train (scripts/pretrain_trace.py)."""
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
        ),
        steps,
    )
    try:
        return fit(model, examples, tcfg, cfg.seed, ckpt_dir=ckpt_dir, desc=desc, on_save=on_save, on_step=on_step).model
    except NonFiniteLoss as e:
        raise ConfigError(str(e)) from None
