"""`starjax sft`: supervised fine-tuning on (prompt, completion) records, resumable at any moment.

Run directory: config.yaml, metrics.jsonl, TensorBoard events (tb/), checkpoints/<step> (train
state + data position), params/ (final parameters, for `starjax sample --checkpoint`).
Restarting the same command continues from the newest readable checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from starjax import multihost, runtime
from starjax.checkpoint import save_params
from starjax.config import save_config, to_yaml
from starjax.data_files import held_out
from starjax.errors import ConfigError
from starjax.log import log
from starjax.run_dir import RunDir
from starjax.schema import Config
from starjax.sources import load_model, load_run_tokenizer, with_vocab
from starjax.tracking import Trackers
from starjax.training.data import device_batch, pack, tokenize_records
from starjax.training.fit import NonFiniteLoss, fit
from starjax.training.records import load_records
from starjax.training.step import loss_sums


def run_sft(cfg: Config) -> int:
    run_dir = RunDir.at(cfg.run_dir)
    run_dir.check()
    run_dir.pull()
    rules = runtime.start(cfg)  # before anything else touches a device
    t, d = cfg.train, cfg.data
    if d.train is None:
        raise ConfigError("starjax sft needs data: set data.train=FILE.jsonl or data.train=tfds:NAME")
    tokenizer = load_run_tokenizer(cfg, "sft")
    cfg = with_vocab(cfg, tokenizer)
    lead = multihost.is_lead()

    records, unparsable = load_records(d.train, d, "data.train")
    if d.eval is None:
        records, held = held_out(records, d.eval_fraction, lambda r: json.dumps(r, sort_keys=True))
    else:
        held, _ = load_records(d.eval, d, "data.eval")
    train_ex, skipped = tokenize_records(records, tokenizer, t.seq_len)
    eval_ex, eval_skipped = tokenize_records(held, tokenizer, t.seq_len)
    skipped = {k: v + eval_skipped[k] for k, v in skipped.items()}  # bad records on either side
    skipped["unparsable line"] = unparsable
    log(
        f"{len(train_ex)} training examples, {len(eval_ex)} held out; skipped: "
        + ", ".join(f"{v} {k}" for k, v in skipped.items())
    )

    model = load_model(t.init_from, cfg.model, rules, cfg.seed)
    graphdef, _ = nnx.split(model)
    if lead:
        save_config(cfg, run_dir.root)
    eval_loss = _evaluator(graphdef, rules, pack(eval_ex, t.seq_len), t.batch_size) if eval_ex else None
    writer = Trackers.open(cfg, run_dir) if lead else None
    metrics_path = run_dir.metrics
    opened: list = []

    def on_step(done: int, m: dict, params) -> None:
        if not opened:  # first step of this process: drop metrics logged after the checkpoint
            if done > 1:
                log(f"resuming from the checkpoint at step {done - 1}")
            if lead:
                _truncate_metrics(metrics_path, done - 1)
            opened.append(open(metrics_path, "a") if lead else None)
        if eval_loss is not None and ((t.eval_every and done % t.eval_every == 0) or done == t.steps):
            m["eval_loss"] = eval_loss(params())
        if lead:
            opened[0].write(json.dumps(m) + "\n")
            opened[0].flush()
            writer.scalars(
                {("eval/loss" if k == "eval_loss" else f"train/{k}"): v for k, v in m.items() if k != "step"}, done, "train/step"
            )

    try:
        sync = run_dir.sync if lead else None
        result = fit(model, train_ex, t, cfg.seed, run_dir.checkpoints, {"config": to_yaml(cfg)}, on_step, "sft", on_save=sync)
    except NonFiniteLoss as e:
        raise ConfigError(str(e)) from None
    finally:
        if opened and opened[0] is not None:
            opened[0].close()
        if writer is not None:
            writer.close()
    save_params(run_dir.params, result.model, overwrite=True)  # collective: every process writes its shards
    if lead:
        run_dir.sync()
    log(f"done: {t.steps} steps; run directory {run_dir.location}")
    return 0


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metrics logged after the checkpoint: those steps run again."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))


def _evaluator(graphdef, rules, rows: dict, batch_size: int):
    """Held-out loss over every packed row, in batches padded with weight-0 rows."""
    n = len(rows["tokens"])
    padded = -(-n // batch_size) * batch_size
    rows = {k: np.concatenate([v, np.zeros((padded - n, *v.shape[1:]), v.dtype)]) for k, v in rows.items()}
    fn = jax.jit(lambda p, b: loss_sums(graphdef, p, b))

    def evaluate(params) -> float:
        total, count = 0.0, 0.0
        for i in range(0, padded, batch_size):
            loss, (weight, _) = fn(params, device_batch({k: v[i : i + batch_size] for k, v in rows.items()}, rules))
            total, count = total + float(loss), count + float(weight)
        return total / max(count, 1.0)

    return evaluate
