"""Built-in scorers. Rule scorers read the answer with the task's `extract` and compare it with
the gold answer: `answer` (the task's own verifier), `exact`, `numeric`, `choice`, `math`;
`steps` checks every intermediate step (tasks with step checks); a `package.module:function`
in star.scorers is a user scorer. The reward-model scorer is in reward_model.py."""

from __future__ import annotations

from typing import Sequence

from starjax.errors import ConfigError
from starjax.registry import SCORERS, import_function
from starjax.star.protocols import Context, Scorer, Verdict
from starjax.tasks.base import Problem, Task, Verifier
from starjax.tasks.verifiers import VERIFIERS


class RuleScorer:
    """1 when the extracted answer passes `verifier` against the gold answer, else 0."""

    def __init__(self, task: Task, verifier: Verifier | None = None):
        self.task, self.verifier = task, verifier

    def __call__(self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[str]) -> list[Verdict]:
        out = []
        for p, c in zip(problems, completions):
            if self.verifier is None:
                ok = self.task.verify(c, p)[1]
            else:
                answer = self.task.extract(c)
                ok = answer is not None and self.verifier(answer, p.answer)
            out.append(Verdict(float(ok), ok))
        return out


@SCORERS.register("answer")
def answer(ctx: Context) -> Scorer:
    return RuleScorer(ctx.task)


def _rule(name: str):
    @SCORERS.register(name)
    def build(ctx: Context) -> Scorer:
        return RuleScorer(ctx.task, VERIFIERS[name])

    return build


for _name in VERIFIERS:
    _rule(_name)


class StepScorer:
    """The share of the rationale's steps that check; correct when all of them do."""

    def __init__(self, task: Task):
        self.task = task

    def __call__(self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[str]) -> list[Verdict]:
        out = []
        for p, c in zip(problems, completions):
            checks = self.task.step_checks(p, c) or [False]
            out.append(Verdict(sum(checks) / len(checks), all(checks)))
        return out


@SCORERS.register("steps")
def steps(ctx: Context) -> Scorer:
    if not ctx.task.checks_steps:
        raise ConfigError(
            f"the steps scorer needs a task that checks its rationales' steps (addition, zip_chain), not {ctx.task.name!r}"
        )
    return StepScorer(ctx.task)


class FunctionScorer:
    """A user's `fn(problems, prompts, completions)` returning, per sample, a score (correct when
    > 0), a (score, correct) pair, or a Verdict."""

    def __init__(self, spec: str):
        self.fn, self.spec = import_function(spec, "scorer"), spec

    def __call__(self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[str]) -> list[Verdict]:
        got = list(self.fn(list(problems), list(prompts), list(completions)))
        if len(got) != len(completions):
            raise ValueError(f"scorer {self.spec} returned {len(got)} scores for {len(completions)} completions")
        return [_verdict(g) for g in got]


def _verdict(g) -> Verdict:
    if isinstance(g, Verdict):
        return g
    if isinstance(g, tuple):
        return Verdict(float(g[0]), bool(g[1]))
    return Verdict(float(g), float(g) > 0)


def build_scorers(ctx: Context, names: Sequence[str]) -> dict[str, Scorer]:
    """star.scorers by name, in order (a name with `:` is a user function)."""
    return {n: FunctionScorer(n) if ":" in n else SCORERS.get(n).build(ctx) for n in names}
