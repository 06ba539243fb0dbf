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
from starjax.training import lora
from starjax.training.data import Example, PackedData, device_batch
from starjax.training.step import compile_train_step, init_state, train_step_traces

# (steps done, metrics, params) for every step, in order; params() gives the model's weights
# (LoRA: merged) after that step at checkpoint and train.eval_every steps and the last, at
# others possibly a step further on. A true return ends training there (early stopping: return
# it at eval_every steps, whose weights are that step's, and the model returned is theirs).
StepHook = Callable[[int, dict, Callable[[], nnx.State]], bool | None]


class NonFiniteLoss(RuntimeError):
    pass


@dataclasses.dataclass
class FitResult:
    model: Transformer
    compilations: int  # train step programs compiled by this call: 0 when an earlier call's was reused
    steps: int  # steps done: cfg.steps unless on_step stopped training early


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
    on_save: Callable[[], None] | None = None,
) -> FitResult:
    """`model` trained for cfg.steps on `examples`; meta is stored with each checkpoint.
    `on_save` runs after each checkpoint is queued (Orbax writes it in the background) and once
    the last is written: a remote run directory's push (storage.py)."""
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
    base = nnx.state(model) if cfg.lora_rank else None
    step_fn = compile_train_step(graphdef, cfg, rules, state, base)

    def params() -> nnx.State:
        """The model's weights as trained so far (LoRA: with the adapters merged in)."""
        return state.params if base is None else lora.merge(base, state.params, cfg)

    traces = train_step_traces()
    lead = multihost.is_lead()
    bar = tqdm(total=cfg.steps, initial=start, desc=desc, unit="step", disable=not (lead and progress), leave=False)
    last_save = start
    pending = None  # (steps done, metrics still on the device, when the step was dispatched)

    def report(done: int, metrics: dict, began: float) -> bool:
        """Whether on_step asks to stop."""
        m = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not math.isfinite(m["loss"]):
            if ckpts is not None:
                ckpts.wait()
            raise NonFiniteLoss(
                f"{desc} loss is {m['loss']} at step {done}; stopping. The last good checkpoint "
                f"(step {last_save}) is kept: lower train.learning_rate or check the data, then rerun to resume"
            )
        m["step"] = done
        m["tokens_per_s"] = cfg.batch_size * cfg.seq_len / (time.perf_counter() - began)  # padding included
        stop = on_step is not None and bool(on_step(done, m, params))
        bar.set_postfix(loss=f"{m['loss']:.4f}", tok_s=f"{m['tokens_per_s']:,.0f}")
        bar.update(1)
        return stop

    done = start
    try:
        for step in range(start, cfg.steps):
            began = time.perf_counter()
            state, metrics = step_fn(state, device_batch(data.host_batch(step), rules))
            # Step n's metrics are read once step n + 1 is dispatched: the host never waits for a
            # step before queueing the next, except where the state itself is wanted (a
            # checkpoint, a held-out evaluation, the end).
            stop = pending is not None and report(*pending)
            done = step + 1
            pending = (done, metrics, began)
            saves = ckpts is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps)
            if saves or (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
                stop = report(*pending) or stop
                pending = None
            # No checkpoint at a step that stopped training: a resumed phase evaluates it again
            # and stops there too, rather than resuming past it.
            if stop:
                break
            if saves:
                ckpts.save(done, state, {"step": done, "epoch_position": list(data.position(done)), **(meta or {})})
                last_save = done
                if on_save is not None:
                    on_save()
        if pending is not None:
            report(*pending)
        if ckpts is not None:
            ckpts.wait()
            if on_save is not None:
                on_save()
    finally:
        bar.close()
        if ckpts is not None:
            ckpts.close()
    return FitResult(nnx.merge(graphdef, params()), train_step_traces() - traces, done)


def with_steps(cfg: TrainConfig, steps: int) -> TrainConfig:
    """The train config for a phase of `steps` steps (warmup capped to the phase)."""
    return dataclasses.replace(cfg, steps=steps, warmup_steps=min(cfg.warmup_steps, max(steps - 1, 0)))
