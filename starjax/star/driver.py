"""A generic resumable driver: iterations of named phases, the state checkpointed after each.

A phase is a function (state, iteration) -> state. After it returns, the driver records that
the phase is done and saves the state; a rerun starts after the last saved phase, so a run
killed at any moment ends identical to an uninterrupted one, provided each phase is a function
of the state and of seeds derived from (seed, iteration, phase name) (starjax/seeds.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

from starjax.star.state import RunState


@dataclass(frozen=True)
class Phase:
    name: str
    run: Callable[[RunState, int], RunState]
    first_iteration: int = 1  # iteration 0 is the base model: only the phases that start at 0 run


class Driver:
    def __init__(self, phases: Sequence[Phase], save: Callable[[int, RunState], None]):
        self.phases, self._save = list(phases), save
        self._index = {p.name: i for i, p in enumerate(self.phases)}

    def step(self, iteration: int, phase: str) -> int:
        """The checkpoint step of `phase` of `iteration`: phases in order, iterations in order."""
        return len(self.phases) * iteration + self._index[phase]

    def reached(self, state: RunState, iteration: int, phase: str) -> bool:
        """Whether `state` is at or past `phase` of `iteration`."""
        return state.phase is not None and self.step(state.iteration, state.phase) >= self.step(iteration, phase)

    def run(self, state: RunState, iterations: int) -> RunState:
        """Every phase of iterations 0..`iterations` not yet done."""
        for n in range(state.iteration, iterations + 1):
            for phase in self.phases:
                if n < phase.first_iteration or self.reached(state, n, phase.name):
                    continue
                state = replace(phase.run(state, n), iteration=n, phase=phase.name)
                self._save(self.step(n, phase.name), state)
        return state
