"""The STaR loop's extension points. Each is a small protocol, built by name from the registry
(starjax/registry.py) with a `Context`, and passed into the loop:

- `Rollout`: how completions of prompts are produced, and what the model trains on for a kept
  whole-chain record (star.rollout).
- `Scorer`: a batch of (problem, prompt, completion) -> one `Verdict` (a score and whether the
  sample is correct) each (star.scorers; the first one's verdict is the sample's).
- `Selector`: one question's attempts -> the ones that survive, in order (star.selectors, applied
  in turn; what survives all of them is kept, and a question with a survivor is solved).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from starjax.schema import Config
from starjax.star.state import Attempt
from starjax.tasks.base import Continuation, Problem, Task

if TYPE_CHECKING:
    from starjax.sampling.engine import Sampler
    from starjax.sharding import AxisRules


@dataclass(frozen=True)
class Context:
    """What a plugin is built with: the run's config, its task and (for plugins that run a model
    of their own) the mesh's sharding rules."""

    cfg: Config
    task: Task
    rules: AxisRules | None = None

    def options(self, section: str, name: str) -> Any:
        """The plugin's own settings, `<section>.<name>` of the config (None if it has none)."""
        return getattr(getattr(self.cfg, section), name, None)


@dataclass(frozen=True)
class Verdict:
    score: float
    correct: bool


class Rollout(Protocol):
    def complete(
        self, sampler: Sampler, prompts: list[str], seed: int, temperature: float, num_samples: int
    ) -> list[list[Continuation]]:
        """`num_samples` continuations of each prompt, in order."""
        ...

    def training_records(self, records: list[dict]) -> list[dict]:
        """The (prompt, completion) records a model trains on for these whole-chain records."""
        ...


class Scorer(Protocol):
    def __call__(self, problems: Sequence[Problem], prompts: Sequence[str], completions: Sequence[str]) -> list[Verdict]: ...


class Selector(Protocol):
    # True for the selectors that bound a kept set (cap, dedupe): with star.accumulate they apply
    # again to the union of every iteration's kept records, newest first
    bounds_union: bool

    def __call__(self, problem: Problem, attempts: list[Attempt]) -> list[Attempt]: ...
