"""Which rationales a STaR iteration keeps, and the scores computed from samples."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

from starjax.tasks.base import Problem, Task


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

    def record(self, problem: Problem) -> dict:
        return {"question": problem.question, "answer": problem.answer, **asdict(self)}


def attempts(task: Task, problems: list[Problem], samples: list[list[str]], hinted: bool) -> list[list[Attempt]]:
    """Verifies every completion of every problem."""
    out = []
    for p, texts in zip(problems, samples):
        row = []
        for text in map(task.trim, texts):
            extracted, correct = task.verify(text, p)
            steps_ok = all(task.step_checks(p, text)) if hasattr(task, "step_checks") else None
            row.append(Attempt(p.id, p.difficulty, hinted, text, extracted, correct, steps_ok))
        out.append(row)
    return out


def keep(task: Task, problems: list[Problem], tries: list[list[Attempt]], cap: int, dedupe: bool,
         verify_steps: bool = False, prefer_frequent: bool = False) -> list[dict]:
    """Training records from correct attempts (with `verify_steps`, only those whose every step
    checks too): at most `cap` per problem, duplicates dropped if `dedupe`, in drawing order or,
    with `prefer_frequent`, the most often drawn completion first. A rationalized attempt is
    stored with the plain prompt, as if no hint was given."""
    out = []
    for p, row in zip(problems, tries):
        if prefer_frequent:
            drawn = Counter(a.completion for a in row)
            row = sorted(row, key=lambda a: -drawn[a.completion])  # stable: ties keep drawing order
        taken: list[str] = []
        for a in row:
            if len(taken) == cap:
                break
            if a.correct and (a.steps_ok or not verify_steps) and not (dedupe and a.completion in taken):
                taken.append(a.completion)
                out.append({"id": p.id, "prompt": task.prompt(p), "completion": a.completion, "rationalized": a.hinted,
                            "steps_ok": a.steps_ok})
    return out


def merge_kept(earlier: list[dict], new: list[dict], cap: int, dedupe: bool) -> list[dict]:
    """Accumulated kept set (V-STaR): newest first per problem, same cap and de-duplication."""
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
    """Whether the most common extracted answer (ties: first seen) is correct."""
    answers = [a.extracted for a in row if a.extracted is not None]
    if not answers:
        return False
    top = Counter(answers).most_common(1)[0][0]
    return next(a.correct for a in row if a.extracted == top)
