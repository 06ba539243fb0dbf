"""Sampled completions judged (`attempts`), what the selectors keep of them (`select`), and the
scores computed from samples (pass@k, majority vote)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Mapping, Sequence

from starjax.star.protocols import Scorer, Selector
from starjax.star.state import Attempt, Kept
from starjax.tasks.base import Continuation, Problem, Task


def attempts(
    task: Task,
    problems: list[Problem],
    prompts: list[str],
    samples: list[list[Continuation]],
    hinted: bool,
    scorers: Mapping[str, Scorer],
) -> list[list[Attempt]]:
    """Scores every completion of every problem with every scorer, in one batch per scorer; the
    first scorer's verdict says whether it is correct. A truncated completion is never correct
    unless the task's trim cut it before the cut (the answer ended, the model ran on past it)."""
    flat = [(p, prompt, c, task.trim(c.text)) for p, prompt, row in zip(problems, prompts, samples) for c in row]
    batch = ([f[0] for f in flat], [f[1] for f in flat], [f[3] for f in flat])
    verdicts = {name: scorer(*batch) for name, scorer in scorers.items()}
    first = next(iter(scorers))
    out: list[list[Attempt]] = [[] for _ in problems]
    owner = [i for i, row in enumerate(samples) for _ in row]
    for j, (p, _, c, text) in enumerate(flat):
        truncated = c.truncated and text == c.text
        steps_ok = all(task.step_checks(p, text)) if task.checks_steps else None
        scores = {name: v[j].score for name, v in verdicts.items()}
        correct = verdicts[first][j].correct and not truncated
        out[owner[j]].append(Attempt(p.id, p.difficulty, hinted, text, task.extract(text), correct, steps_ok, truncated, scores))
    return out


def apply(selectors: Sequence[Selector], problem: Problem, row: list) -> list:
    for select in selectors:
        row = select(problem, row)
    return row


def select(
    task: Task, problems: list[Problem], tries: list[list[Attempt]], selectors: Sequence[Selector], few_shot_prompt: bool
) -> tuple[list[bool], list[Kept]]:
    """Per problem whether something survives the selectors (solved), and the survivors as
    training records. Records hold the bare question as their prompt (with `few_shot_prompt`,
    the exemplars too) and never the hint: a rationalized attempt is stored as if no hint was given."""
    solved, kept = [], []
    for p, row in zip(problems, tries):
        chosen = apply(selectors, p, list(row))
        solved.append(bool(chosen))
        prompt = task.prompt(p, few_shot=few_shot_prompt) if chosen else ""
        kept += [Kept(p.id, prompt, a.completion, a.hinted, a.steps_ok) for a in chosen]
    return solved, kept


def merge(earlier: Sequence[Kept], new: Sequence[Kept], selectors: Sequence[Selector]) -> tuple[Kept, ...]:
    """The accumulated kept set: new records before earlier ones, and per question the selectors
    that bound a kept set (cap, dedupe) applied to the union; the union's order is kept."""
    union = list(new) + list(earlier)
    bounding = [s for s in selectors if s.bounds_union]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(union):
        groups[r.id].append(i)
    survivors: set[int] = set()
    for members in groups.values():
        chosen = apply(bounding, None, [union[i] for i in members])
        survivors |= {id(r) for r in chosen}
    return tuple(r for r in union if id(r) in survivors)


def sample_accuracy(rows: Sequence[Sequence[Attempt]]) -> float:
    """The share of correct samples: pass@1. Where questions drew different numbers of samples
    (star.solved_samples), each question's share weighs the same, so the questions sampled
    more do not tilt it."""
    if len({len(row) for row in rows}) > 1:
        return sum(sum(a.correct for a in row) / len(row) for row in rows) / len(rows)
    return sum(a.correct for row in rows for a in row) / sum(len(row) for row in rows)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def majority_correct(task: Task, problem: Problem, row: list[Attempt]) -> bool:
    """Whether the most common answer is correct, answers grouped by the task's verifier ("72",
    "72.0" and "$72" are one vote for a numeric task); ties go to the group seen first.
    Truncated attempts do not vote."""
    groups: list[list[Attempt]] = []  # each group's first attempt stands for it
    for a in row:
        if a.extracted is None or a.truncated:
            continue
        group = next((g for g in groups if task.verifier(a.extracted, g[0].extracted)), None)
        if group is None:
            groups.append([a])
        else:
            group.append(a)
    if not groups:
        return False
    top = max(groups, key=len)  # max keeps the first of equal lengths
    return task.verifier(top[0].extracted, problem.answer)
