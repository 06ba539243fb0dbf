"""Test-split evaluation: greedy accuracy overall and per difficulty; with eval_samples > 1
also unbiased pass@k and majority-vote accuracy over samples at eval_temperature."""

from __future__ import annotations

from collections import defaultdict

from starjax.sampling.engine import Sampler
from starjax.schema import StarConfig
from starjax.seeds import derive
from starjax.star.kept import attempts, majority_correct, pass_at_k
from starjax.star.plugins.scorers import RuleScorer
from starjax.star.protocols import Rollout
from starjax.tasks.base import Problem, Task


def by_difficulty(problems: list[Problem], correct: list[bool]) -> dict[str, float]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for p, ok in zip(problems, correct):
        groups[p.difficulty].append(ok)
    return {g: sum(v) / len(v) for g, v in sorted(groups.items(), key=lambda kv: difficulty_key(kv[0]))}


def difficulty_key(label: str) -> tuple:
    """Numeric labels in numeric order, then the rest alphabetically."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def evaluate(task: Task, rollout: Rollout, sampler: Sampler, problems: list[Problem], cfg: StarConfig, seed: int) -> dict:
    """Test metrics of the current policy, judged by the task's own verifier (the gold answer),
    whatever scorers the run selects its training rationales with."""
    prompts = [task.prompt(p) for p in problems]
    gold = {"answer": RuleScorer(task)}
    texts = rollout.complete(sampler, prompts, seed, 0.0, 1)
    greedy = [row[0] for row in attempts(task, problems, prompts, texts, False, gold)]
    correct = [a.correct for a in greedy]
    out: dict = {
        "test_accuracy": sum(correct) / max(len(correct), 1),
        "test_accuracy_by_difficulty": by_difficulty(problems, correct),
        "test_truncated": sum(a.truncated for a in greedy),
    }
    n = cfg.eval_samples
    if n > 1:
        samples = rollout.complete(sampler, prompts, derive(seed, "samples"), cfg.eval_temperature, n)
        tries = attempts(task, problems, prompts, samples, False, gold)
        ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= n} | {n})
        out["pass_at_k"] = {str(k): sum(pass_at_k(n, sum(a.correct for a in row), k) for row in tries) / len(tries) for k in ks}
        out["majority_accuracy"] = sum(majority_correct(task, p, row) for p, row in zip(problems, tries)) / len(tries)
    return out
