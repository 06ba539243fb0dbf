"""The training loop shared by `starjax sft`, base pre-training and every STaR fine-tune.

`fit` runs `steps` compiled train steps over packed examples, checkpoints the train state
every `checkpoint_every` steps into `ckpt_dir` (when given) and resumes from the newest
readable checkpoint there, so a killed phase continues instead of starting over. The data
order is a function of the step, so resumed equals uninterrupted.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import jax
from flax import nnx
from tqdm.auto import tqdm

from starjax import multihost
from starjax.checkpoint import TrainCheckpoints
from starjax.errors import ConfigError
from starjax.model.transformer import Transformer
from starjax.schema import TrainConfig
from starjax.training.data import Example, PackedData, device_batch
from starjax.training.step import TrainState, compile_train_step, init_state, train_step_traces

StepHook = Callable[[int, dict, TrainState], None]  # (steps done, metrics, state) after every step


class NonFiniteLoss(RuntimeError):
    pass


@dataclasses.dataclass
class FitResult:
    model: Transformer
    compilations: int  # train step programs compiled by this call: 0 when an earlier call's was reused


def fit(
    model: Transformer,
    examples: list[Example],
    cfg: TrainConfig,
    seed: int,
    ckpt_dir: str | Path | None = None,
    meta: dict | None = None,
    on_step: StepHook | None = None,
    desc: str = "train",
    progress: bool = True,
) -> FitResult:
    """`model` trained for cfg.steps on `examples`; meta is stored with each checkpoint."""
    rules = model.rules
    dp = rules.mesh.shape["data"] * rules.mesh.shape["fsdp"]
    if cfg.batch_size % (dp * cfg.micro_batches):
        raise ConfigError("train.batch_size must be a multiple of train.micro_batches x mesh data x fsdp")
    try:
        data = PackedData(examples, cfg.seq_len, cfg.batch_size, seed)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    graphdef, _ = nnx.split(model)
    state = init_state(model, cfg, seed)
    ckpts = TrainCheckpoints(ckpt_dir, keep=cfg.keep_checkpoints) if ckpt_dir is not None else None
    start = 0
    if ckpts is not None and (resumed := ckpts.restore_latest(state)) is not None:
        start, state, _ = resumed
    step_fn = compile_train_step(graphdef, cfg, rules, state)
    traces = train_step_traces()
    lead = multihost.is_lead()
    bar = tqdm(total=cfg.steps, initial=start, desc=desc, unit="step", disable=not (lead and progress), leave=False)
    last_save = start
    try:
        for step in range(start, cfg.steps):
            began = time.perf_counter()
            state, metrics = step_fn(state, device_batch(data.host_batch(step), rules))
            m = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not math.isfinite(m["loss"]):
                if ckpts is not None:
                    ckpts.wait()
                raise NonFiniteLoss(
                    f"{desc} loss is {m['loss']} at step {step + 1}; stopping. The last good checkpoint "
                    f"(step {last_save}) is kept: lower train.learning_rate or check the data, then rerun to resume"
                )
            done = step + 1
            m["step"] = done
            m["tokens_per_s"] = cfg.batch_size * cfg.seq_len / (time.perf_counter() - began)  # padding included
            if on_step is not None:
                on_step(done, m, state)
            bar.set_postfix(loss=f"{m['loss']:.4f}", tok_s=f"{m['tokens_per_s']:,.0f}")
            bar.update(1)
            if ckpts is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                ckpts.save(done, state, {"step": done, "epoch_position": list(data.position(done)), **(meta or {})})
                last_save = done
        if ckpts is not None:
            ckpts.wait()
    finally:
        bar.close()
        if ckpts is not None:
            ckpts.close()
    return FitResult(nnx.merge(graphdef, state.params), train_step_traces() - traces)


def with_steps(cfg: TrainConfig, steps: int) -> TrainConfig:
    """The train config for a phase of `steps` steps (warmup capped to the phase)."""
    return dataclasses.replace(cfg, steps=steps, warmup_steps=min(cfg.warmup_steps, max(steps - 1, 0)))
