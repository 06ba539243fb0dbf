"""`starjax star`: iterations of generate -> verify -> rationalize -> assemble -> fine-tune ->
evaluate -> checkpoint, resumable at any moment.

A JSON state checkpoint is written at every phase boundary (after generation, after training,
after evaluation) holding the position, the kept set and the metrics history; the policy of
iteration n is saved once to RUN_DIR/params/iter_n, and each fine-tune checkpoints its own train
state. Every random choice is a function of (seed, iteration, phase), so rerunning the same
command after a kill continues where it stopped and ends identical to an uninterrupted run.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from starjax import multihost, runtime
from starjax.checkpoint import StateCheckpoints, load_model, save_params
from starjax.config import Config, ConfigError, validate_star_sampling
from starjax.sampling.engine import Sampler
from starjax.seeds import derive
from starjax.star import report
from starjax.star.base_model import base_model
from starjax.star.evaluate import by_difficulty, evaluate
from starjax.star.kept import attempts, keep, merge_kept
from starjax.star.kept import solved as solved_by
from starjax.star.predict import predict
from starjax.star.reference import compare, load_reference
from starjax.star.setup import RunSetup, prepare
from starjax.training.data import tokenize_records
from starjax.training.fit import NonFiniteLoss, fit, with_steps
from starjax.training.tensorboard import TensorBoard

PHASES = ("generated", "trained", "evaluated")


def phase_step(iteration: int, phase: str) -> int:
    return 3 * iteration + PHASES.index(phase)


def reached(state: dict, iteration: int, phase: str) -> bool:
    """Whether the checkpointed state is at or past `phase` of `iteration`."""
    return state["phase"] is not None and phase_step(state["iteration"], state["phase"]) >= phase_step(iteration, phase)


def train_steps(cfg: Config, iteration: int) -> int:
    """STaR's schedule: first_steps in iteration 1, step_growth more each iteration after."""
    return round(cfg.star.first_steps * (1 + cfg.star.step_growth) ** (iteration - 1))


def _seed(cfg: Config, iteration: int, phase: str) -> int:
    return derive(cfg.seed, "star", iteration, phase)


def run_star(cfg: Config, allow_config_change: bool = False, reference: str | None = None) -> int:
    """`reference`: a file of published metrics (star/reference.py) to compare the finished run with."""
    setup = prepare(cfg, allow_config_change)  # every usage error, before any compute
    ref = load_reference(reference) if reference is not None else None
    rules = runtime.start(cfg)
    validate_star_sampling(cfg, rules.mesh.shape["data"] * rules.mesh.shape["fsdp"])  # still before any compute
    lead = multihost.is_lead()
    log = (lambda msg: print(f"starjax: {msg}", file=sys.stderr, flush=True)) if lead else (lambda msg: None)
    run_dir = Path(cfg.run_dir)
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(setup.config_yaml)  # as given: what a resume is compared with
    multihost.barrier("run directory ready")
    setup.load(log)
    base = base_model(cfg, rules, setup.task, setup.splits, setup.tokenizer, log)
    states = StateCheckpoints(run_dir / "state")
    state = states.restore_latest() or {
        "iteration": 0,
        "phase": None,
        "kept": [],
        "kept_all": [],
        "history": [],
        "current": {},
        "compilations": {"sampler": 0, "train": 0},
    }
    if state["phase"] is not None:
        log(f"resuming: iteration {state['iteration']} is {state['phase']}")
    trained = state["iteration"] - (state["phase"] not in ("trained", "evaluated"))  # newest fine-tuned policy
    policy = load_model(run_dir / "params" / f"iter_{trained}", cfg.model, rules, cfg.seed) if trained > 0 else base
    sampler = Sampler(policy, setup.tokenizer, cfg.sampler)
    compiles_before = state["compilations"]["sampler"]  # programs compiled before a resume
    writer = TensorBoard(run_dir / "tb") if lead else None

    def commit(iteration: int, phase: str) -> None:
        state["iteration"], state["phase"] = iteration, phase
        state["compilations"]["sampler"] = compiles_before + sampler.compilations
        states.save(phase_step(iteration, phase), state)

    def evaluate_and_record(n: int, extra: dict) -> None:
        began = time.perf_counter()
        record = {
            "iteration": n,
            **state["current"],
            **extra,
            **evaluate(setup.task, sampler, setup.test, cfg.star, _seed(cfg, n, "evaluate")),
        }
        record["seconds"] = {**record.get("seconds", {}), "evaluate": time.perf_counter() - began}
        _finish_iteration(cfg, state, record, compiles_before + sampler.compilations, writer, lead)
        commit(n, "evaluated")

    try:
        if not state["history"]:  # iteration 0: the base model, before any STaR iteration
            evaluate_and_record(0, {"skipped": setup.skipped})
        for n in range(state["iteration"] + (state["phase"] == "evaluated"), cfg.star.iterations + 1):
            if not reached(state, n, "generated"):
                _generate(cfg, n, state, sampler, setup, log, lead)
                commit(n, "generated")
            if not reached(state, n, "trained"):
                policy = _train(cfg, n, state, base, policy, setup, log)
                sampler.update(policy)
                commit(n, "trained")
                if lead:
                    shutil.rmtree(run_dir / "train" / f"iter_{n}", ignore_errors=True)
            evaluate_and_record(n, {})
    except NonFiniteLoss as e:
        raise ConfigError(str(e)) from None
    finally:
        states.close()
        if writer is not None:
            writer.close()
    if lead:
        print("\n" + report.table(state["history"]), flush=True)
        print(f"run directory: {run_dir.resolve()} (metrics.jsonl, accuracy.png, samples/)", flush=True)
        if ref is not None:
            print(compare(state["history"], cfg.seed, ref), flush=True)
        log(f"done: {cfg.star.iterations} iterations")
    return 0


def _generate(cfg: Config, n: int, state: dict, sampler: Sampler, setup: RunSetup, log, lead: bool) -> None:
    """Samples rationales for every training question, verifies them, rationalizes the failures."""
    task, train, s = setup.task, setup.train, cfg.star
    began = time.perf_counter()
    texts = task.complete(sampler, [task.prompt(p) for p in train], _seed(cfg, n, "generate"), s.temperature, s.num_samples)
    tries = attempts(task, train, texts, hinted=False)
    solved = solved_by(tries, s.verify_steps)
    current = {
        "train_accuracy": sum(solved) / len(train),
        "train_accuracy_by_difficulty": by_difficulty(train, solved),
        "sample_accuracy": sum(a.correct for row in tries for a in row) / sum(len(row) for row in tries),
        "truncated": sum(a.truncated for row in tries for a in row),
    }
    current.update(predict(task, train, tries))
    few_shot_prompt = s.train_prompt == "few_shot"
    kept = keep(task, train, tries, s.max_kept_per_question, s.dedupe, s.verify_steps, s.prefer_frequent, few_shot_prompt)
    seconds = {"generate": time.perf_counter() - began}
    samples = [a.record(p) for p, row in zip(train, tries) for a in row]
    rationalized: list[dict] = []
    if s.rationalize:
        began = time.perf_counter()
        failed = [p for p, ok in zip(train, solved) if not ok and p.id in setup.hintable]
        if failed:
            hinted_texts = task.complete(
                sampler,
                [task.prompt(p, hint=True) for p in failed],
                _seed(cfg, n, "rationalize"),
                s.temperature,
                s.rationalize_samples or s.num_samples,
            )
            hinted = attempts(task, failed, hinted_texts, hinted=True)
            rationalized = keep(
                task, failed, hinted, s.max_kept_per_question, s.dedupe, s.verify_steps, s.prefer_frequent, few_shot_prompt
            )
            samples += [a.record(p) for p, row in zip(failed, hinted) for a in row]
            current["truncated"] += sum(a.truncated for row in hinted for a in row)
        seconds["rationalize"] = time.perf_counter() - began
    kept += rationalized
    if hasattr(task, "step_checks"):  # RL-STaR: how many kept chains went through a wrong step
        wrong = [not r["steps_ok"] for r in kept]  # checked once, when the attempt was verified
        current["kept_wrong_step"] = sum(wrong) / len(wrong) if wrong else None
    state["kept_all"] = merge_kept(state["kept_all"], kept, s.max_kept_per_question, s.dedupe) if s.accumulate else []
    state["kept"] = kept
    current.update(kept=len(kept), rationalized=len(rationalized), seconds=seconds)
    state["current"] = current
    if lead:
        report.write_samples(Path(cfg.run_dir), n, samples)
    log(
        f"iteration {n}: solved {sum(solved)}/{len(train)} training questions, kept {len(kept)} rationales "
        f"({len(rationalized)} by rationalization)"
    )


def _train(cfg: Config, n: int, state: dict, base, policy, setup: RunSetup, log):
    """Fine-tunes on the kept set (from the base model, or the last policy) and saves the result."""
    run_dir = Path(cfg.run_dir)
    records = state["kept_all"] if cfg.star.accumulate else state["kept"]
    examples, skipped = tokenize_records(setup.task.training_records(records), setup.tokenizer, cfg.train.seq_len)
    steps = train_steps(cfg, n)
    began = time.perf_counter()
    if not examples:
        log(f"iteration {n} kept nothing to train on; the policy stays as it was")
        steps = 0
        new = policy
    else:
        start = base if cfg.star.restart_from_base else policy
        result = fit(
            start,
            fill_batch(examples, cfg),
            with_steps(cfg.train, steps),
            _seed(cfg, n, "train"),
            ckpt_dir=run_dir / "train" / f"iter_{n}",
            desc=f"fine-tune {n}",
        )
        new = result.model
        state["compilations"]["train"] += result.compilations
    save_params(run_dir / "params" / f"iter_{n}", new, overwrite=True)
    state["current"].update(train_steps=steps, train_examples=len(examples), train_skipped=sum(skipped.values()))
    state["current"]["seconds"]["train"] = time.perf_counter() - began
    return new


def fill_batch(examples: list, cfg: Config) -> list:
    """Repeats a kept set too small to pack into one batch, so any non-empty set can train."""
    tokens = sum(len(e) for e in examples)
    need = cfg.train.batch_size * cfg.train.seq_len
    return examples * max(1, -(-2 * need // max(tokens, 1)))


def _finish_iteration(cfg: Config, state: dict, record: dict, sampler_compiles: int, writer, lead: bool) -> None:
    record["compilations"] = {"sampler": sampler_compiles, "train": state["compilations"]["train"]}
    state["history"].append(record)
    state["current"] = {}
    if lead:
        run_dir = Path(cfg.run_dir)
        report.write_metrics(run_dir, state["history"])
        writer.scalars(report.tensorboard_scalars(record), record["iteration"])
        report.plot(run_dir, state["history"])
        print(report.table(state["history"]), flush=True)
