"""`starjax sft`: supervised fine-tuning on (prompt, completion) records, resumable at any moment.

Run directory: config.yaml, metrics.jsonl, TensorBoard events (tb/), checkpoints/<step> (train
state + data position), params/ (final parameters, for `starjax sample --checkpoint`).
Restarting the same command continues from the newest readable checkpoint.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import zlib
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from starjax.checkpoint import TrainCheckpoints, load_model, save_params
from starjax.config import Config, ConfigError, save_config, to_yaml
from starjax import runtime
from starjax.tokenizer import load_run_tokenizer
from starjax.training.data import PackedData, device_batch, pack, tokenize_records
from starjax.training.records import load_records
from starjax.training.step import compile_train_step, init_state, loss_sums


class NonFiniteLoss(RuntimeError):
    pass


def split_records(records: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """A stable held-out split: a record's side depends only on its content."""
    train, held = [], []
    for r in records:
        key = json.dumps(r, sort_keys=True).encode()
        (held if zlib.crc32(key) % 10_000 < fraction * 10_000 else train).append(r)
    return train, held


def run_sft(cfg: Config) -> int:
    rules = runtime.start(cfg)  # before anything else touches a device
    t, d = cfg.train, cfg.data
    if d.train is None:
        raise ConfigError("starjax sft needs data: set data.train=FILE.jsonl or data.train=tfds:NAME")
    tokenizer = load_run_tokenizer(cfg, "sft")
    run_dir = Path(cfg.run_dir)
    lead = jax.process_index() == 0
    log = (lambda msg: print(f"starjax: {msg}", file=sys.stderr, flush=True)) if lead else (lambda msg: None)

    records, unparsable = load_records(d.train, d)
    if d.eval is None:
        records, held = split_records(records, d.eval_fraction)
    else:
        held, _ = load_records(d.eval, d)
    train_ex, skipped = tokenize_records(records, tokenizer, t.seq_len)
    eval_ex, eval_skipped = tokenize_records(held, tokenizer, t.seq_len)
    skipped = {k: v + eval_skipped[k] for k, v in skipped.items()}  # bad records on either side
    skipped["unparsable line"] = unparsable
    log(f"{len(train_ex)} training examples, {len(eval_ex)} held out; skipped: "
        + ", ".join(f"{v} {k}" for k, v in skipped.items()))
    try:
        data = PackedData(train_ex, t.seq_len, t.batch_size, cfg.seed)
    except ValueError as e:
        raise ConfigError(str(e)) from None

    if t.batch_size % (rules.mesh.shape["data"] * rules.mesh.shape["fsdp"] * t.micro_batches):
        raise ConfigError("train.batch_size must be a multiple of train.micro_batches x mesh data x fsdp")
    model = load_model(t.init_from, cfg.model, rules, cfg.seed)
    graphdef, _ = nnx.split(model)
    state = init_state(model, t, cfg.seed)
    ckpts = TrainCheckpoints(run_dir / "checkpoints", keep=t.keep_checkpoints)
    resumed = ckpts.restore_latest(state)
    start = 0
    if resumed is not None:
        start, state, _ = resumed
        log(f"resuming from the checkpoint at step {start}")
    if lead:
        save_config(cfg, run_dir)
        _truncate_metrics(run_dir / "metrics.jsonl", start)
    step_fn = compile_train_step(graphdef, t, rules, state)
    eval_loss = _evaluator(graphdef, rules, pack(eval_ex, t.seq_len), t.batch_size) if eval_ex else None

    writer = _TensorBoard(run_dir / "tb") if lead else None
    metrics_file = open(run_dir / "metrics.jsonl", "a") if lead else None
    bar = tqdm(total=t.steps, initial=start, desc="sft", unit="step", disable=not lead)
    last_save = start
    try:
        for step in range(start, t.steps):
            began = time.perf_counter()
            state, metrics = step_fn(state, device_batch(data.host_batch(step), rules))
            m = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not math.isfinite(m["loss"]):
                ckpts.wait()
                raise NonFiniteLoss(
                    f"loss is {m['loss']} at step {step + 1}; stopping. The last good checkpoint (step {last_save}) "
                    "is kept: lower train.learning_rate or check the data, then rerun to resume"
                )
            m["step"] = step + 1
            m["tokens_per_s"] = t.batch_size * t.seq_len / (time.perf_counter() - began)  # processed, padding included
            done = step + 1
            if eval_loss is not None and ((t.eval_every and done % t.eval_every == 0) or done == t.steps):
                m["eval_loss"] = eval_loss(state.params)
            if lead:
                metrics_file.write(json.dumps(m) + "\n")
                metrics_file.flush()
                writer.scalars(m, done)
            bar.set_postfix(loss=f"{m['loss']:.4f}", tok_s=f"{m['tokens_per_s']:,.0f}")
            bar.update(1)
            if done % t.checkpoint_every == 0 or done == t.steps:
                ckpts.save(done, state, {"step": done, "epoch_position": list(data.position(done)), "config": to_yaml(cfg)})
                last_save = done
        ckpts.wait()
        if start < t.steps:
            final = run_dir / "params"
            if final.exists():
                shutil.rmtree(final)
            save_params(final, nnx.merge(graphdef, state.params))
    except NonFiniteLoss as e:
        raise ConfigError(str(e)) from None
    finally:
        bar.close()
        ckpts.close()
        if lead:
            metrics_file.close()
            writer.close()
    log(f"done: {t.steps} steps; run directory {run_dir}")
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


class _TensorBoard:
    def __init__(self, directory: Path):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(str(directory))

    def scalars(self, metrics: dict, step: int) -> None:
        for k, v in metrics.items():
            if k != "step":
                self._writer.add_scalar(f"train/{k}" if k != "eval_loss" else "eval/loss", v, step)

    def close(self) -> None:
        self._writer.close()
