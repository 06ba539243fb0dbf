"""`starjax star`: STaR's Algorithm 1 (Zelikman et al. 2022), resumable at any moment.

    for n in 1..N:
        rollout:      sample rationales for every training question        (star.rollout)
        score:        judge each sample                                      (star.scorers)
        rationalize:  sample again, with the answer as a hint, for the questions nothing solved
        select:       keep what survives the selectors                       (star.selectors)
        fine-tune:    train the base model (or the last policy) on what was kept
        evaluate:     test accuracy of the new policy

Each iteration is three phases of a resumable driver (star/driver.py): `generated` (rollout to
select), `trained` and `evaluated`; the state (star/state.py) is checkpointed after each, the
policy of iteration n is saved once to RUN_DIR/params/iter_n, and every random choice is a seed
derived from (seed, iteration, phase name), so a rerun after a kill ends identical to an
uninterrupted run.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, replace

from starjax import multihost, runtime
from starjax.checkpoint import StateCheckpoints, save_params
from starjax.errors import ConfigError
from starjax.log import log
from starjax.model.transformer import Transformer
from starjax.sampling.engine import Sampler, SharedSampler
from starjax.schema import Config
from starjax.seeds import derive
from starjax.sources import load_model
from starjax.star import report
from starjax.star.base_model import base_model
from starjax.star.driver import Driver, Phase
from starjax.star.evaluate import by_difficulty, evaluate
from starjax.star.kept import attempts, merge, sample_accuracy, select
from starjax.star.predict import predict
from starjax.star.protocols import Context
from starjax.star.reference import compare, load_reference
from starjax.star.retention import prune_policies
from starjax.star.setup import Plugins, RunSetup, build_plugins, prepare
from starjax.star.state import Attempt, Compilations, IterationRecord, Kept, RunState
from starjax.tasks.base import Problem, Task
from starjax.tracking import Trackers
from starjax.training.data import tokenize_records
from starjax.training.fit import NonFiniteLoss, fit, with_steps
from starjax.validation import validate_star_sampling


def train_steps(cfg: Config, iteration: int) -> int:
    """STaR's schedule: first_steps in iteration 1, step_growth more each iteration after."""
    return round(cfg.star.first_steps * (1 + cfg.star.step_growth) ** (iteration - 1))


def _seed(cfg: Config, iteration: int, phase: str) -> int:
    return derive(cfg.seed, "star", iteration, phase)


@dataclass
class Run:
    """What the phases share: the loaded setup, the plugins, the models and the sampler."""

    cfg: Config
    setup: RunSetup
    plugins: Plugins
    base: Transformer
    policy: Transformer
    sampler: Sampler
    writer: Trackers | None
    compiles_before: int  # sampler programs compiled before a resume
    compiled_at_start: int  # the sampler's count when the STaR phases began (pre-training's checks)

    def compilations(self, state: RunState) -> Compilations:
        return replace(state.compilations, sampler=self.compiles_before + self.sampler.compilations - self.compiled_at_start)

    def sample(
        self, questions: list[Problem], n: int, hint: bool, count: int | None = None, phase: str = "generate"
    ) -> list[list[Attempt]]:
        """Rollout and score: `count` (default star.num_samples; with the answer as a hint:
        star.rationalize_samples) attempts per question, each judged by the scorers."""
        task, s = self.setup.task, self.cfg.star
        prompts = [task.prompt(p, hint=hint) for p in questions]
        if count is None:
            count = (s.rationalize_samples or s.num_samples) if hint else s.num_samples
        seed = _seed(self.cfg, n, "rationalize" if hint else phase)
        texts = self.plugins.rollout.complete(self.sampler, prompts, seed, s.temperature, count)
        return attempts(task, questions, prompts, texts, hint, self.plugins.scorers)

    def rollout(self, state: RunState, n: int) -> list[list[Attempt]]:
        """The training questions' attempts: star.solved_samples each for those the last fine-tune
        had a kept record of, star.num_samples for the rest (two sampler calls, in input order)."""
        train, s = self.setup.train, self.cfg.star
        had = {k.id for k in (state.kept_all if s.accumulate else state.kept)} if s.solved_samples else set()
        if not had:
            return self.sample(train, n, hint=False)
        groups = [[i for i, p in enumerate(train) if (p.id in had) == solved] for solved in (False, True)]
        tries: list[list[Attempt]] = [[] for _ in train]
        for members, count, phase in zip(groups, (s.num_samples, s.solved_samples), ("generate", "generate_solved")):
            if members:
                for i, row in zip(members, self.sample([train[i] for i in members], n, False, count, phase)):
                    tries[i] = row
        return tries

    def select(self, questions: list[Problem], tries: list[list[Attempt]]) -> tuple[list[bool], list[Kept]]:
        """Per question whether it is solved, and the kept training records (star.selectors)."""
        return select(self.setup.task, questions, tries, self.plugins.selectors, self.cfg.star.train_prompt == "few_shot")


def run_star(cfg: Config, allow_config_change: bool = False, reference: str | None = None) -> int:
    """`reference`: a file of published metrics (star/reference.py) to compare the finished run with."""
    setup = prepare(cfg, allow_config_change)  # every usage error, before any compute
    ref = load_reference(reference) if reference is not None else None
    rules = runtime.start(cfg)
    generation = runtime.sampler_rules(cfg.sampler, rules)[0].mesh.shape
    validate_star_sampling(cfg, generation["data"] * generation["fsdp"])  # still before any compute
    lead = multihost.is_lead()
    run_dir = setup.run_dir
    if lead:
        run_dir.root.mkdir(parents=True, exist_ok=True)
        run_dir.config.write_text(setup.config_yaml)  # as given: what a resume is compared with
    multihost.barrier("run directory ready")
    setup.load(log)
    cfg = setup.cfg
    plugins = build_plugins(Context(cfg, setup.task, rules))
    shared = SharedSampler(setup.tokenizer, cfg.sampler)
    base = base_model(cfg, rules, setup.task, plugins.rollout, setup.splits, setup.tokenizer, run_dir, log, shared)
    checkpoints = StateCheckpoints(run_dir.state)
    saved = checkpoints.restore_latest()
    state = RunState.from_json(saved) if saved is not None else RunState()
    if state.phase is not None:
        log(f"resuming: iteration {state.iteration} is {state.phase}")
    trained = state.iteration - (state.phase not in ("trained", "evaluated"))  # newest fine-tuned policy
    policy = load_model(run_dir.policy(trained), cfg.model, rules, cfg.seed) if trained > 0 else base
    sampler = shared(policy)
    writer = Trackers.open(cfg, run_dir) if lead else None
    run = Run(cfg, setup, plugins, base, policy, sampler, writer, state.compilations.sampler, sampler.compilations)

    def save(step: int, s: RunState) -> None:
        checkpoints.save(step, replace(s, compilations=run.compilations(s)).to_json())
        if lead:
            run_dir.sync()

    phases = [
        Phase("generated", lambda s, n: generate(run, s, n)),
        Phase("trained", lambda s, n: fine_tune(run, s, n)),
        Phase("evaluated", lambda s, n: evaluate_policy(run, s, n), first_iteration=0),
    ]
    try:
        state = Driver(phases, save).run(state, cfg.star.iterations)
    except NonFiniteLoss as e:
        raise ConfigError(str(e)) from None
    finally:
        checkpoints.close()
        if writer is not None:
            writer.close()
        if lead:
            run_dir.sync()
    if lead:
        history = [r.to_json() for r in state.history]
        print("\n" + report.table(history), flush=True)
        print(f"run directory: {run_dir.location} (metrics.jsonl, accuracy.png, samples/)", flush=True)
        if ref is not None:
            print(compare(history, cfg.seed, ref), flush=True)
        log(f"done: {cfg.star.iterations} iterations")
    return 0


def generate(run: Run, state: RunState, n: int) -> RunState:
    """Rollout and score, select, rationalize what nothing solved: the kept set of iteration n."""
    train, s = run.setup.train, run.cfg.star
    began = time.perf_counter()
    tries = run.rollout(state, n)
    solved, kept = run.select(train, tries)
    current = _sampled(run.setup.task, train, tries, solved)
    seconds = {"generate": time.perf_counter() - began}
    samples = [a.record(p) for p, row in zip(train, tries) for a in row]
    rationalized: list[Kept] = []
    if s.rationalize:
        began = time.perf_counter()
        failed = [p for p, ok in zip(train, solved) if not ok and p.id in run.setup.hintable]
        if failed:
            hinted = run.sample(failed, n, hint=True)
            rationalized = run.select(failed, hinted)[1]
            samples += [a.record(p) for p, row in zip(failed, hinted) for a in row]
            current["truncated"] += sum(a.truncated for row in hinted for a in row)
        seconds["rationalize"] = time.perf_counter() - began
    kept += rationalized
    if run.setup.task.checks_steps:  # RL-STaR: how many kept chains went through a wrong step
        wrong = [not k.steps_ok for k in kept]  # checked once, when the attempt was scored
        current["kept_wrong_step"] = sum(wrong) / len(wrong) if wrong else None
    if multihost.is_lead():
        report.write_samples(run.setup.run_dir.samples(n), samples)
        rows = report.sample_rows(samples[: report.SAMPLES_SHOWN])
        run.writer.samples("star/samples", report.samples_markdown(rows), report.SAMPLE_COLUMNS, rows, n, "star/iteration")
    log(
        f"iteration {n}: solved {sum(solved)}/{len(train)} training questions, kept {len(kept)} rationales "
        f"({len(rationalized)} by rationalization)"
    )
    kept_all = merge(state.kept_all, kept, run.plugins.selectors) if s.accumulate else ()
    current.update(kept=len(kept), rationalized=len(rationalized), seconds=seconds)
    return replace(state, kept=tuple(kept), kept_all=kept_all, current=current)


def _sampled(task: Task, train: list[Problem], tries: list[list[Attempt]], solved: list[bool]) -> dict:
    """The policy's measured quality on the training questions, and RL-STaR's prediction from it."""
    return {
        "train_accuracy": sum(solved) / len(train),
        "train_accuracy_by_difficulty": by_difficulty(train, solved),
        "sample_accuracy": sample_accuracy(tries),
        "truncated": sum(a.truncated for row in tries for a in row),
        **predict(task, train, tries),
    }


def fine_tune(run: Run, state: RunState, n: int) -> RunState:
    """Fine-tunes the base model (or the last policy) on the kept set and saves the new policy."""
    cfg, setup = run.cfg, run.setup
    kept = state.kept_all if cfg.star.accumulate else state.kept
    records = run.plugins.rollout.training_records([k.record() for k in kept])
    examples, skipped = tokenize_records(records, setup.tokenizer, cfg.train.seq_len)
    steps = train_steps(cfg, n)
    began = time.perf_counter()
    compiled = 0
    curve: dict[str, list[float]] = {key: [] for key in FINE_TUNE_CURVES}
    if not examples:
        log(f"iteration {n} kept nothing to train on; the policy stays as it was")
        steps, new = 0, run.policy
    else:
        start = run.base if cfg.star.restart_from_base else run.policy
        ckpt_dir = setup.run_dir.fine_tune_checkpoints(n)
        result = fit(
            start,
            fill_batch(examples, cfg),
            with_steps(cfg.train, steps),
            _seed(cfg, n, "train"),
            ckpt_dir,
            on_step=lambda done, m, _: log_fine_tune_step(run, curve, n, done, m),
            on_save=setup.run_dir.sync if multihost.is_lead() else None,
            desc=f"fine-tune {n}",
        )
        new, compiled = result.model, result.compilations
    save_params(setup.run_dir.policy(n), new, overwrite=True)
    run.policy = new
    run.sampler.update(new)
    if multihost.is_lead():
        shutil.rmtree(setup.run_dir.fine_tune_checkpoints(n), ignore_errors=True)
    seconds = {**state.current["seconds"], "train": time.perf_counter() - began}
    state = state.measured(
        train_steps=steps, train_examples=len(examples), train_skipped=sum(skipped.values()), fine_tune=curve, seconds=seconds
    )
    return replace(state, compilations=replace(state.compilations, train=state.compilations.train + compiled))


FINE_TUNE_CURVES = ("loss", "learning_rate", "grad_norm")


def log_fine_tune_step(run: Run, curve: dict[str, list[float]], n: int, done: int, metrics: dict) -> None:
    """Fine-tune n's step `done` into the iteration's curves and TensorBoard (star/fine_tune/*,
    at the run's cumulative fine-tune step)."""
    for key in FINE_TUNE_CURVES:
        curve[key].append(round(metrics[key], 6))
    if run.writer is not None:
        step = sum(train_steps(run.cfg, i) for i in range(1, n)) + done
        run.writer.scalars({f"star/fine_tune/{key}": metrics[key] for key in FINE_TUNE_CURVES}, step, "star/fine_tune/step")


def evaluate_policy(run: Run, state: RunState, n: int) -> RunState:
    """Test metrics of policy n (n = 0: the base model), recorded as iteration n's line."""
    cfg, setup = run.cfg, run.setup
    began = time.perf_counter()
    extra = {"skipped": setup.skipped} if n == 0 else {}
    metrics = {**state.current, **extra}
    metrics.update(evaluate(setup.task, run.plugins.rollout, run.sampler, setup.test, cfg.star, _seed(cfg, n, "evaluate")))
    metrics["seconds"] = {**metrics.get("seconds", {}), "evaluate": time.perf_counter() - began}
    metrics["compilations"] = asdict(run.compilations(state))
    record = IterationRecord(n, metrics)
    state = replace(state, history=(*state.history, record), current={})
    if multihost.is_lead():
        history = [r.to_json() for r in state.history]
        report.write_metrics(setup.run_dir.metrics, history)
        run.writer.scalars(report.tensorboard_scalars(record.to_json()), n, "star/iteration")
        report.plot(setup.run_dir.plot, history)
        print(report.table(history), flush=True)
        accuracy = {r.iteration: r.metrics["test_accuracy"] for r in state.history if r.iteration > 0}
        prune_policies(setup.run_dir, accuracy, n, cfg.star.keep_policies)
    return state


def fill_batch(examples: list, cfg: Config) -> list:
    """Repeats a kept set too small to pack into one batch, so any non-empty set can train."""
    tokens = sum(len(e) for e in examples)
    need = cfg.train.batch_size * cfg.train.seq_len
    return examples * max(1, -(-2 * need // max(tokens, 1)))
