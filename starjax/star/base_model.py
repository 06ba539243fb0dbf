"""The model STaR starts from: given parameters (star.base), a short pre-training stage on the
task's seed data (pretrain.steps > 0), or a random init (smoke tests only).

Pre-training is a resumable phase of its own: its train state is checkpointed under
RUN_DIR/pretrain/ and the result saved to RUN_DIR/base/, which later runs reuse.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable

from starjax.checkpoint import load_model, save_params
from starjax.config import Config, ConfigError
from starjax.model.transformer import Transformer
from starjax.sharding import AxisRules
from starjax.tasks.base import Splits, Task
from starjax.tokenizer import Tokenizer
from starjax.training.data import tokenize_records
from starjax.training.fit import NonFiniteLoss, fit, with_steps


def base_model(cfg: Config, rules: AxisRules, task: Task, splits: Splits, tokenizer: Tokenizer,
               log: Callable[[str], None]) -> Transformer:
    if cfg.star.base is not None:
        return load_model(cfg.star.base, cfg.model, rules, cfg.seed)
    if cfg.pretrain.steps == 0:
        log("no star.base and pretrain.steps=0: starting from a randomly initialised model")
        return load_model(None, cfg.model, rules, cfg.seed)
    run_dir = Path(cfg.run_dir)
    if (run_dir / "base").is_dir():
        return load_model(run_dir / "base", cfg.model, rules, cfg.seed)
    records = task.seed_records(splits)
    examples, skipped = tokenize_records(records, tokenizer, cfg.train.seq_len)
    if not examples:
        raise ConfigError(f"task {task.name!r} gave no usable seed data for pre-training (skipped: {skipped}); "
                          "set star.base or pretrain.steps=0")
    log(f"pre-training the base model: {cfg.pretrain.steps} steps on {len(examples)} seed examples"
        + (f" (skipped {sum(skipped.values())}: {skipped})" if sum(skipped.values()) else ""))
    p = cfg.pretrain
    tcfg = with_steps(dataclasses.replace(cfg.train, learning_rate=p.learning_rate, schedule="cosine",
                                          batch_size=p.batch_size or cfg.train.batch_size,
                                          warmup_steps=p.warmup_steps), p.steps)
    try:
        result = fit(load_model(None, cfg.model, rules, cfg.seed), examples, tcfg, cfg.seed,
                     ckpt_dir=run_dir / "pretrain", desc="pre-train")
    except NonFiniteLoss as e:
        raise ConfigError(str(e)) from None
    save_params(run_dir / "base", result.model, overwrite=True)
    shutil.rmtree(run_dir / "pretrain", ignore_errors=True)
    return result.model
