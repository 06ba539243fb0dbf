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
from starjax.checkpoint import load_model, save_params
from starjax.config import Config, ConfigError
from starjax.model.transformer import Transformer
from starjax.sharding import AxisRules
from starjax.tasks.base import Splits, Task
from starjax.tokenizer import Tokenizer
from starjax.training.data import tokenize_records
from starjax.training.fit import NonFiniteLoss, fit, with_steps


def base_model(
    cfg: Config, rules: AxisRules, task: Task, splits: Splits, tokenizer: Tokenizer, log: Callable[[str], None]
) -> Transformer:
    if cfg.star.base is not None:
        return load_model(cfg.star.base, cfg.model, rules, cfg.seed)
    if cfg.pretrain.steps == 0:
        log(f"no star.base and pretrain.steps=0: starting from {cfg.model.from_hf or 'a randomly initialised model'}")
        return load_model(None, cfg.model, rules, cfg.seed)
    run_dir = Path(cfg.run_dir)
    if (run_dir / "base").is_dir():
        return load_model(run_dir / "base", cfg.model, rules, cfg.seed)
    p = cfg.pretrain
    model = load_model(None, cfg.model, rules, cfg.seed)
    if p.warm_steps:
        if (run_dir / "warm").is_dir():
            model = load_model(run_dir / "warm", cfg.model, rules, cfg.seed)
        else:
            model = _pretrain(
                cfg,
                model,
                task.training_records(task.gold_records(splits)),
                tokenizer,
                p.warm_steps,
                p.warm_learning_rate or p.learning_rate,
                run_dir / "pretrain_warm",
                "warm start",
                log,
            )
            save_params(run_dir / "warm", model, overwrite=True)  # the stage is done: a restart goes on from here
            if multihost.is_lead():
                shutil.rmtree(run_dir / "pretrain_warm", ignore_errors=True)
    model = _pretrain(
        cfg,
        model,
        task.training_records(task.seed_records(splits)),
        tokenizer,
        p.steps,
        p.learning_rate,
        run_dir / "pretrain",
        "pre-train",
        log,
    )
    save_params(run_dir / "base", model, overwrite=True)
    for stage in ("pretrain", "warm"):
        if multihost.is_lead():
            shutil.rmtree(run_dir / stage, ignore_errors=True)
    return model


def _pretrain(
    cfg: Config,
    model: Transformer,
    records: list[dict],
    tokenizer: Tokenizer,
    steps: int,
    learning_rate: float,
    ckpt_dir: Path,
    desc: str,
    log: Callable[[str], None],
) -> Transformer:
    """`model` after `steps` resumable steps (cosine from `learning_rate`) on `records`."""
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
        return fit(model, examples, tcfg, cfg.seed, ckpt_dir=ckpt_dir, desc=desc).model
    except NonFiniteLoss as e:
        raise ConfigError(str(e)) from None
