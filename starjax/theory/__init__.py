"""RL-STaR theory: the tabular chain-of-thought model in closed form and a finite-sample simulator."""

from starjax.theory.rlstar import (
    Criterion,
    TheoryError,
    Trajectory,
    accuracy,
    alphas,
    criterion,
    effective_delta,
    estimate_deltas,
    iterations_to_reach,
    kept_wrong_step,
    star_update,
    trajectory,
)
from starjax.theory.simulate import simulate

__all__ = [
    "Criterion",
    "TheoryError",
    "Trajectory",
    "accuracy",
    "alphas",
    "criterion",
    "effective_delta",
    "estimate_deltas",
    "iterations_to_reach",
    "kept_wrong_step",
    "simulate",
    "star_update",
    "trajectory",
]
