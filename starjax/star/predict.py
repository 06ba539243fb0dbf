"""RL-STaR predictions for a STaR run (starjax.theory applied to measured quantities).

Tasks with checkable intermediate steps (zip_chain) give per-step transition accuracies
d_hat_t directly from samples. Other tasks that declare a chain shape (M candidates per step,
T steps, e.g. addition: 10 digits, one step per scratch line) get an *effective* d: the equal
per-step d that gives the measured final accuracy in the tabular model. That assumes every
step is equally hard and errors are uniform guesses; it is a rough guide, not a measurement.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from starjax import theory
from starjax.star.kept import sample_accuracy
from starjax.star.state import Attempt
from starjax.tasks.base import Problem, Task


def from_step_checks(checks: list[list[bool]], num_states: int) -> dict:
    """d_hat per step from sampled trajectories, and the theory's next-iteration predictions."""
    d_hat = [min(max(d, 0.0), 1.0) for d in theory.estimate_deltas(checks, num_states)]
    nxt = theory.star_update(d_hat, num_states)
    return {
        "d_hat": d_hat,
        "predicted_accuracy": theory.accuracy(nxt, num_states),
        "theory_accuracy_now": theory.accuracy(d_hat, num_states),
        "theory_kept_wrong_step": theory.kept_wrong_step(d_hat, num_states),
    }


def effective_groups(
    task: Task, problems: list[Problem], tries: list[list[Attempt]], fallback: tuple[int, int] | None = None
) -> dict[str, tuple[int, list[float], int]]:
    """Per difficulty: (M, the effective d for each of the T steps, samples), from the sampled
    accuracy; (M, T) from the task's chain shape, else `fallback`. Empty when neither exists."""
    groups: dict[str, list] = defaultdict(list)
    for p, row in zip(problems, tries):
        groups[p.difficulty].append((p, row))
    out = {}
    for label, members in groups.items():
        shape = task.chain_shape(members[0][0]) or fallback
        if shape is None:
            return {}
        m, t = shape
        rows = [row for _, row in members]
        out[label] = (m, [theory.effective_delta(sample_accuracy(rows), m, t)] * t, sum(map(len, rows)))
    return out


def from_accuracy(task: Task, problems: list[Problem], tries: list[list[Attempt]]) -> dict:
    """Next-iteration accuracy from each difficulty group's effective d, weighted by group size."""
    groups = effective_groups(task, problems, tries)
    # by samples, which is by questions when every question drew as many (star.solved_samples aside)
    sizes = Counter(p.difficulty for p in problems) if len({len(row) for row in tries}) > 1 else None
    weight = {label: sizes[label] if sizes else count for label, (_, _, count) in groups.items()}
    total = sum(weight.values())
    if not total:
        return {}
    predicted = sum(weight[label] * theory.accuracy(theory.star_update(d, m), m) for label, (m, d, _) in groups.items())
    return {"predicted_accuracy": predicted / total}


def predict(task: Task, problems: list[Problem], tries: list[list[Attempt]]) -> dict:
    """Predictions from every sample of the current policy (see the module docstring)."""
    states = task.step_states()
    if states is not None:  # a chain with M states per step: d_hat measured step by step
        checks = [task.step_checks(p, a.completion) for p, row in zip(problems, tries) for a in row]
        return from_step_checks(checks, states)
    return from_accuracy(task, problems, tries)
