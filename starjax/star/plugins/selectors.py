"""Built-in selectors, applied in star.selectors' order to each question's attempts:

- `correct`: the attempts the first scorer judged correct (never a truncated one).
- `verify_steps`: and whose every intermediate step checks (tasks with step checks).
- `restates_question`: whose rationale begins by restating the question as asked (tasks that can
  tell: addition's operands line); a hinted rationale that miscopies the question and still lands
  on the hinted answer is not kept.
- `threshold`: whose `selection.threshold.scorer` score is at least `min_score`.
- `prefer_frequent`: all attempts, the most often drawn completion first (ties in drawing order);
  before `correct`, the counts include wrong attempts.
- `best_of_n`: the `n` with the highest `selection.best_of_n.scorer` score.
- `dedupe`: the first of each distinct completion.
- `cap`: the first `selection.cap.per_question`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from starjax.errors import ConfigError
from starjax.registry import SELECTORS
from starjax.star.protocols import Context
from starjax.star.state import Attempt
from starjax.tasks.base import Problem, Task


class _Filter:
    bounds_union = False

    def keeps(self, a: Attempt) -> bool:
        raise NotImplementedError

    def __call__(self, problem: Problem, attempts: list[Attempt]) -> list[Attempt]:
        return [a for a in attempts if self.keeps(a)]


@SELECTORS.register("correct")
class Correct(_Filter):
    def __init__(self, ctx: Context):
        pass

    def keeps(self, a: Attempt) -> bool:
        return a.correct


@SELECTORS.register("verify_steps")
class VerifySteps(_Filter):
    def __init__(self, ctx: Context):
        if not ctx.task.checks_steps:
            raise ConfigError(
                f"the verify_steps selector needs a task that checks its rationales' steps (addition, zip_chain); "
                f"task {ctx.task.name!r} checks answers only"
            )

    def keeps(self, a: Attempt) -> bool:
        return bool(a.steps_ok)


@SELECTORS.register("restates_question")
class RestatesQuestion:
    bounds_union = False

    def __init__(self, ctx: Context):
        self.task = ctx.task
        if type(self.task).restates_question is Task.restates_question:
            raise ConfigError(
                f"the restates_question selector needs a task that can tell whether a rationale restates its question "
                f"(addition); task {self.task.name!r} cannot"
            )

    def __call__(self, problem: Problem, attempts: list[Attempt]) -> list[Attempt]:
        return [a for a in attempts if self.task.restates_question(problem, a.completion)]


def _check_scorer(cfg, key: str, scorer: str) -> None:
    if scorer not in cfg.star.scorers:
        raise ConfigError(f"selection.{key}.scorer={scorer!r} is not in star.scorers={list(cfg.star.scorers)}; add it there")


@dataclass(frozen=True)
class ThresholdConfig:
    scorer: str = "answer"
    min_score: float = 1.0

    def check(self, cfg) -> None:
        _check_scorer(cfg, "threshold", self.scorer)


@SELECTORS.register("threshold", config=ThresholdConfig)
class Threshold(_Filter):
    def __init__(self, ctx: Context):
        self.o: ThresholdConfig = ctx.options("selection", "threshold")

    def keeps(self, a: Attempt) -> bool:
        return a.scores[self.o.scorer] >= self.o.min_score


@SELECTORS.register("prefer_frequent")
class PreferFrequent:
    bounds_union = False

    def __init__(self, ctx: Context):
        pass

    def __call__(self, problem: Problem, attempts: list[Attempt]) -> list[Attempt]:
        drawn = Counter(a.completion for a in attempts)
        return sorted(attempts, key=lambda a: -drawn[a.completion])  # stable: ties keep drawing order


@dataclass(frozen=True)
class BestOfNConfig:
    scorer: str = "answer"
    n: int = 1

    def check(self, cfg) -> None:
        _check_scorer(cfg, "best_of_n", self.scorer)
        if self.n < 1:
            raise ConfigError(f"selection.best_of_n.n={self.n} must be >= 1")


@SELECTORS.register("best_of_n", config=BestOfNConfig)
class BestOfN:
    bounds_union = False

    def __init__(self, ctx: Context):
        self.o: BestOfNConfig = ctx.options("selection", "best_of_n")

    def __call__(self, problem: Problem, attempts: list[Attempt]) -> list[Attempt]:
        return sorted(attempts, key=lambda a: -a.scores[self.o.scorer])[: self.o.n]


@SELECTORS.register("dedupe")
class Dedupe:
    bounds_union = True

    def __init__(self, ctx: Context):
        pass

    def __call__(self, problem: Problem, attempts: list[Attempt]) -> list[Attempt]:
        seen: set[str] = set()
        out = []
        for a in attempts:
            if a.completion not in seen:
                seen.add(a.completion)
                out.append(a)
        return out


@dataclass(frozen=True)
class CapConfig:
    # Kept rationales per question (STaR: 1; ReST-EM / RFT keep several).
    per_question: int = 1

    def check(self, cfg) -> None:
        if self.per_question < 1:
            raise ConfigError(f"selection.cap.per_question={self.per_question} must be >= 1")


@SELECTORS.register("cap", config=CapConfig)
class Cap:
    bounds_union = True

    def __init__(self, ctx: Context):
        self.n = ctx.options("selection", "cap").per_question

    def __call__(self, problem: Problem, attempts: list[Attempt]) -> list[Attempt]:
        return attempts[: self.n]
