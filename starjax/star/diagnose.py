"""`starjax diagnose`: before spending accelerator hours on STaR, sample from a policy, estimate
its per-step quality and print what the RL-STaR theory predicts for the next iterations.

Tasks with checkable steps (zip_chain) give d_hat_t per step from the samples. Other tasks use
an effective d: the equal per-step d whose tabular accuracy J = (1 + (M-1) d^T) / M matches the
measured final accuracy, with (M, T) from the task (addition: answer space, scratch lines) or
from --states/--steps. That assumes equally hard steps and uniformly random errors.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter

from starjax import runtime, theory
from starjax.errors import ConfigError
from starjax.log import log
from starjax.sampling.engine import Sampler
from starjax.schema import Config
from starjax.sources import load_model
from starjax.star.evaluate import by_difficulty, evaluate
from starjax.star.kept import attempts
from starjax.star.plugins.scorers import RuleScorer
from starjax.star.predict import effective_groups, from_step_checks
from starjax.star.protocols import Context
from starjax.star.setup import build_plugins, prepare


def run_diagnose(cfg: Config, args: argparse.Namespace) -> int:
    if args.samples < 1 or args.iterations < 1 or args.temperature <= 0:
        raise ConfigError("--samples and --iterations must be >= 1 and --temperature > 0")
    setup = prepare(cfg, allow_config_change=True)
    checkpoint = args.checkpoint or setup.run_dir.newest_policy()
    if checkpoint is None:
        raise ConfigError(f"no --checkpoint and no policy in {cfg.run_dir}; give --checkpoint DIR")
    rules = runtime.start(cfg)
    setup.load(log)
    cfg, task = setup.cfg, setup.task
    rollout = build_plugins(Context(cfg, task, rules)).rollout
    problems = setup.train[: args.questions or None]
    model = load_model(checkpoint, cfg.model, rules, cfg.seed)
    sampler = Sampler(model, setup.tokenizer, cfg.sampler)
    log(f"sampling {args.samples} per question for {len(problems)} questions at temperature {args.temperature} from {checkpoint}")
    tries = _sampled(task, rollout, sampler, problems, cfg.seed, args)
    accuracy = sum(a.correct for row in tries for a in row) / sum(len(row) for row in tries)
    print(f"sampled accuracy: {accuracy:.4f} ({args.samples} x {len(problems)} samples)")
    states = task.step_states()
    if states is not None:  # a chain with M states per step: d_hat measured step by step
        checks = [task.step_checks(p, a.completion) for p, row in zip(problems, tries) for a in row]
        groups = {"all": (states, from_step_checks(checks, states)["d_hat"], len(checks))}
        print("d_hat per step (measured from the samples): " + ", ".join(f"{d:.4f}" for d in groups["all"][1]))
    else:
        groups = _effective_groups(task, problems, tries, args)
    for name, (m, deltas, count) in groups.items():
        _report(name, m, deltas, count, args.iterations)
    if args.held_out:
        _held_out(task, rollout, sampler, problems, tries, setup.test[: args.questions or None], cfg, args)
    return 0


def _sampled(task, rollout, sampler, problems: list, seed: int, args) -> list:
    """--samples completions per question at --temperature, judged by the task's own verifier."""
    prompts = [task.prompt(p) for p in problems]
    texts = rollout.complete(sampler, prompts, seed, args.temperature, args.samples)
    return attempts(task, problems, prompts, texts, False, {"answer": RuleScorer(task)})


def _held_out(task, rollout, sampler, train: list, train_tries: list, test: list, cfg: Config, args) -> None:
    """Greedy and sampled accuracy per difficulty on the training questions and the held-out ones:
    a policy that does its training questions better than held-out ones of the same difficulty has
    learned those questions, not the skill (fine-tunes that see the same kept set again and again)."""
    greedy_only = dataclasses.replace(cfg.star, eval_samples=1)
    test_tries = _sampled(task, rollout, sampler, test, cfg.seed, args)
    print(f"\ntraining vs held-out questions ({args.samples} samples each at temperature {args.temperature}, and greedy)")
    print(f"{'split':<6} {'difficulty':>10} {'questions':>9} {'greedy':>7} {'sampled':>8} {'pass@' + str(args.samples):>8}")
    for split, problems, tries in (("train", train, train_tries), ("test", test, test_tries)):
        greedy = evaluate(task, rollout, sampler, problems, greedy_only, cfg.seed)["test_accuracy_by_difficulty"]
        sampled = by_difficulty(problems, [sum(a.correct for a in row) / len(row) for row in tries])
        passed = by_difficulty(problems, [any(a.correct for a in row) for row in tries])
        counts = Counter(p.difficulty for p in problems)
        for label in greedy:
            print(f"{split:<6} {label:>10} {counts[label]:>9} {greedy[label]:>7.3f} {sampled[label]:>8.3f} {passed[label]:>8.3f}")


def _effective_groups(task, problems, tries, args) -> dict:
    groups = effective_groups(task, problems, tries, fallback=(args.states, args.steps))
    assumed = "the task's chain shape" if task.chain_shape(problems[0]) else f"M={args.states}, T={args.steps}"
    print(f"effective d (assumes {assumed}, equally hard steps, uniform errors)")
    return {(f"difficulty {label}" if label else "all"): group for label, group in sorted(groups.items())}


def _report(name: str, m: int, deltas: list[float], count: int, iterations: int) -> None:
    run = theory.trajectory(deltas, m, iterations)
    verdict = theory.criterion(deltas, m)
    print(f"\n{name}: M={m}, T={len(deltas)}, d={' '.join(f'{d:.3f}' for d in deltas)} ({count} samples)")
    print("  predicted accuracy by iteration: " + "  ".join(f"{k}:{a:.3f}" for k, a in zip(run.iteration, run.accuracy)))
    if verdict.stalls:
        print(f"  WARNING: {verdict.verdict}")
    else:
        print(f"  {verdict.verdict}")
