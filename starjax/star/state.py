"""The STaR loop's typed state: what one sample is (`Attempt`), what a question keeps (`Kept`),
what an iteration measured (`IterationRecord`) and where the run is (`RunState`).

All are frozen; the loop builds new ones with `dataclasses.replace`. `RunState` is written as
JSON at every phase boundary (RUN_DIR/state/<step>) and read back on resume; a state written by
a starjax before these types (no `version`) has the same content and is read the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from starjax.errors import ConfigError
from starjax.tasks.base import Problem

STATE_VERSION = 2


@dataclass(frozen=True)
class Attempt:
    """One sampled completion and its verdict, as written to samples/iter_N.jsonl."""

    id: str
    difficulty: str
    hinted: bool
    completion: str
    extracted: str | None
    correct: bool  # the first scorer's verdict; never for a truncated completion
    steps_ok: bool | None = None  # every intermediate step checks; None where the task cannot check
    truncated: bool = False  # cut at max_new_tokens before the answer ended
    scores: Mapping[str, float] = field(default_factory=dict)  # every scorer's score, by name

    def record(self, problem: Problem) -> dict:
        return {"question": problem.question, "answer": problem.answer, **asdict(self)}


@dataclass(frozen=True)
class Kept:
    """A training record a STaR iteration kept: the prompt (never with the hint) and the rationale."""

    id: str
    prompt: str
    completion: str
    rationalized: bool
    steps_ok: bool | None

    def record(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class IterationRecord:
    """One line of metrics.jsonl: iteration n's metrics, in the order they were measured."""

    iteration: int
    metrics: Mapping[str, Any]

    def to_json(self) -> dict:
        return {"iteration": self.iteration, **self.metrics}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> IterationRecord:
        return cls(d["iteration"], {k: v for k, v in d.items() if k != "iteration"})


@dataclass(frozen=True)
class Compilations:
    sampler: int = 0
    train: int = 0


@dataclass(frozen=True)
class RunState:
    """Where a STaR run is: the last phase done (`None`: nothing yet) of `iteration`, the kept sets,
    the finished iterations' records and the metrics of the one in progress."""

    iteration: int = 0
    phase: str | None = None
    kept: tuple[Kept, ...] = ()  # this iteration's
    kept_all: tuple[Kept, ...] = ()  # every iteration's, with star.accumulate
    history: tuple[IterationRecord, ...] = ()
    current: Mapping[str, Any] = field(default_factory=dict)  # metrics of the iteration in progress
    compilations: Compilations = Compilations()

    def measured(self, **metrics: Any) -> RunState:
        """With `metrics` added to the iteration in progress."""
        return replace(self, current={**self.current, **metrics})

    def to_json(self) -> dict:
        return {
            "version": STATE_VERSION,
            "iteration": self.iteration,
            "phase": self.phase,
            "kept": [k.record() for k in self.kept],
            "kept_all": [k.record() for k in self.kept_all],
            "history": [r.to_json() for r in self.history],
            "current": dict(self.current),
            "compilations": asdict(self.compilations),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunState:
        version = d.get("version", 1)  # 1: the untyped dict of earlier versions, same content
        if version > STATE_VERSION:
            raise ConfigError(
                f"the run directory's state was written by a newer starjax (state version {version}); "
                "resume it with that version or use another run_dir"
            )
        try:
            return cls(
                iteration=d["iteration"],
                phase=d["phase"],
                kept=tuple(Kept(**k) for k in d["kept"]),
                kept_all=tuple(Kept(**k) for k in d["kept_all"]),
                history=tuple(IterationRecord.from_json(r) for r in d["history"]),
                current=d["current"],
                compilations=Compilations(**d["compilations"]),
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(
                f"the run directory's state checkpoint is not one starjax can read ({e}); use another run_dir"
            ) from None
