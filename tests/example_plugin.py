"""A task, a scorer and a selector from outside the package: one file, registered by name and
named in a run's `plugins` (tests/test_extending.py runs a STaR iteration with them;
docs/extending.md walks through it)."""

import random
from dataclasses import dataclass

from starjax.errors import ConfigError
from starjax.registry import SCORERS, SELECTORS, TASKS
from starjax.star.protocols import Context, Verdict
from starjax.tasks.base import Problem, Splits, Task
from starjax.tasks.verifiers import exact


@dataclass(frozen=True)
class ReverseConfig:  # the config section task.reverse
    words: int = 40
    length: int = 3

    def check(self, cfg) -> None:
        if self.words < 4 or self.length < 1:
            raise ConfigError("task.reverse needs words >= 4 and length >= 1")


@TASKS.register("reverse", config=ReverseConfig)
class Reverse(Task):
    """Spell a word backwards: `Question: abc` -> `c b a` then `The answer is cba`."""

    name = "reverse"

    @classmethod
    def from_config(cls, cfg) -> "Reverse":
        return cls(cfg.task.reverse, cfg.seed)

    def __init__(self, options: ReverseConfig, seed: int):
        super().__init__(exact)
        self.options, self.seed = options, seed

    def load(self) -> Splits:
        rng = random.Random(self.seed)
        words = sorted({"".join(rng.choice("abcdef") for _ in range(self.options.length)) for _ in range(self.options.words)})
        problems = [Problem(w, w, w[::-1], str(len(w)), " ".join(w[::-1])) for w in words]
        return Splits(problems[: len(problems) * 3 // 4], problems[len(problems) * 3 // 4 :])


@SCORERS.register("shorter_is_better")
class ShorterIsBetter:
    """Every non-empty completion is correct; shorter ones score higher."""

    def __init__(self, ctx: Context):
        pass

    def __call__(self, problems, prompts, completions):
        return [Verdict(-float(len(c)), bool(c.strip())) for c in completions]


@SELECTORS.register("shortest_first")
class ShortestFirst:
    bounds_union = False

    def __init__(self, ctx: Context):
        pass

    def __call__(self, problem, attempts):
        return sorted(attempts, key=lambda a: len(a.completion))
