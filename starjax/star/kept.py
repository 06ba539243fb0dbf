"""Which rationales a STaR iteration keeps, and the scores computed from samples."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

from starjax.tasks.base import Continuation, Problem, Task


@dataclass
class Attempt:
    """One sampled completion and its verdict, as written to samples/iter_N.jsonl."""

    id: str
    difficulty: str
    hinted: bool
    completion: str
    extracted: str | None
    correct: bool
    steps_ok: bool | None = None  # every intermediate step checks; None where the task cannot check
    truncated: bool = False  # cut at max_new_tokens before the answer ended: never correct

    def record(self, problem: Problem) -> dict:
        return {"question": problem.question, "answer": problem.answer, **asdict(self)}


def attempts(task: Task, problems: list[Problem], samples: list[list[Continuation]], hinted: bool) -> list[list[Attempt]]:
    """Verifies every completion of every problem. A truncated completion counts as wrong unless
    the task's trim cut it before the cut (the answer ended, the model ran on past it)."""
    out = []
    for p, row_in in zip(problems, samples):
        row = []
        for c in row_in:
            text = task.trim(c.text)
            truncated = c.truncated and text == c.text
            extracted, correct = task.verify(text, p)
            steps_ok = all(task.step_checks(p, text)) if hasattr(task, "step_checks") else None
            row.append(Attempt(p.id, p.difficulty, hinted, text, extracted, correct and not truncated, steps_ok, truncated))
        out.append(row)
    return out


def solves(attempt: Attempt, verify_steps: bool) -> bool:
    """A correct answer, and with `verify_steps` every intermediate step checking too."""
    return attempt.correct and (attempt.steps_ok or not verify_steps)


def solved(tries: list[list[Attempt]], verify_steps: bool) -> list[bool]:
    """Per problem, whether some attempt `solves` it (the others go to rationalization)."""
    return [any(solves(a, verify_steps) for a in row) for row in tries]


def keep(
    task: Task,
    problems: list[Problem],
    tries: list[list[Attempt]],
    cap: int,
    dedupe: bool,
    verify_steps: bool = False,
    prefer_frequent: bool = False,
    few_shot_prompt: bool = False,
) -> list[dict]:
    """Training records from the attempts that `solves`: at most `cap` per problem, duplicates
    dropped if `dedupe`, in drawing order or, with `prefer_frequent`, the most often drawn
    completion first. Records hold the bare question as their prompt (no exemplars; with
    `few_shot_prompt`, the exemplars too) and never the hint: a rationalized attempt is stored as
    if no hint was given."""
    out = []
    for p, row in zip(problems, tries):
        if prefer_frequent:
            drawn = Counter(a.completion for a in row)
            row = sorted(row, key=lambda a: -drawn[a.completion])  # stable: ties keep drawing order
        taken: list[str] = []
        for a in row:
            if len(taken) == cap:
                break
            if solves(a, verify_steps) and not (dedupe and a.completion in taken):
                taken.append(a.completion)
                out.append(
                    {
                        "id": p.id,
                        "prompt": task.prompt(p, few_shot=few_shot_prompt),
                        "completion": a.completion,
                        "rationalized": a.hinted,
                        "steps_ok": a.steps_ok,
                    }
                )
    return out


def merge_kept(earlier: list[dict], new: list[dict], cap: int, dedupe: bool) -> list[dict]:
    """Accumulated kept set: newest first per problem, the cap and de-duplication over the union."""
    out, count, seen = [], Counter(), set()
    for r in new + earlier:
        key = (r["id"], r["completion"])
        if (dedupe and key in seen) or count[r["id"]] >= cap:
            continue
        seen.add(key)
        count[r["id"]] += 1
        out.append(r)
    return out


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
