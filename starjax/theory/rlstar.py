"""RL-STaR's tabular model in closed form: accuracy, one STaR iteration, the improvement criterion.

The model (Chang et al., arXiv 2410.23912): a chain of thought is a T-step Markov chain over M
states per level. Exactly one next state is correct at every step; the correct transition keeps
the question's identity and a wrong one jumps to one of the other M-1 identities uniformly. The
answer is correct iff the chain ends on the start identity. The policy at step t puts
alpha_t = (1 + (M-1) d_t) / M on the correct next state and beta_t = (1 - d_t) / M on each wrong
one. Equivalently step t adds an error offset in Z_M (0 w.p. alpha_t, each x != 0 w.p. beta_t)
and the answer is correct iff the offsets sum to 0.

Why everything has a closed form: the transition matrix alpha I + beta (11^T - I) has
eigenvalue 1 on the all-ones vector and d on its orthogonal complement (every non-trivial
character of Z_M), so after T steps P(sum = 0) = (1 + (M-1) prod_t d_t) / M.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Sequence


class TheoryError(ValueError):
    """An argument outside the model (d not in [0,1], M < 2, T < 1, ...); the message says which."""


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def check_states(M: int) -> int:
    n = _integer(M)
    if n is None or n < 2:
        raise TheoryError(f"number of states M={M!r} must be an integer >= 2 (one correct and at least one wrong next state)")
    return n


def check_count(name: str, value: int, minimum: int) -> int:
    n = _integer(value)
    if n is None or n < minimum:
        raise TheoryError(f"{name}={value!r} must be an integer >= {minimum}")
    return n


def check_deltas(deltas: Sequence[float], steps: int | None = None) -> list[float]:
    """Validate d_1..d_T (each in [0,1]); with `steps`, there must be exactly that many."""
    try:
        ds = [float(d) for d in deltas]
    except (TypeError, ValueError):
        raise TheoryError(f"deltas {deltas!r} must be a sequence of numbers in [0, 1], one per step") from None
    if steps is not None:
        steps = check_count("number of steps T", steps, 1)
        if len(ds) != steps:
            raise TheoryError(
                f"got {len(ds)} deltas for T={steps} steps: give one delta (used for every step) or exactly {steps}"
            )
    if not ds:
        raise TheoryError("no deltas: the chain needs at least one step (T >= 1), one delta per step")
    for t, d in enumerate(ds, 1):
        if not (0.0 <= d <= 1.0):  # also rejects nan
            raise TheoryError(f"delta for step {t} is {d}: it must be in [0, 1] (0 = uniform guessing, 1 = always correct)")
    return ds


def alphas(deltas: Sequence[float], M: int) -> list[float]:
    """Probability of the correct next state at each step: alpha_t = (1 + (M-1) d_t) / M."""
    M = check_states(M)
    return [(1 + (M - 1) * d) / M for d in check_deltas(deltas)]


def accuracy(deltas: Sequence[float], M: int) -> float:
    """Probability the final answer is correct: J = (1 + (M-1) prod_t d_t) / M.

    For T = 3 and equal d this is the published alpha^3 + 3(M-1) alpha beta^2 + (M-1)(M-2) beta^3.
    """
    M = check_states(M)
    return (1 + (M - 1) * math.prod(check_deltas(deltas))) / M


def _products_without(ds: Sequence[float]) -> list[float]:
    """P_{-t} = prod_{s != t} d_s for every t, from prefix and suffix products (O(T), and no
    division by d_t, so d_t = 0 needs no special case)."""
    prefix = [1.0]
    for d in ds[:-1]:
        prefix.append(prefix[-1] * d)
    out = [0.0] * len(ds)
    suffix = 1.0
    for t in range(len(ds) - 1, -1, -1):
        out[t] = prefix[t] * suffix
        suffix *= ds[t]
    return out


def star_update(deltas: Sequence[float], M: int) -> list[float]:
    """One STaR iteration in the infinite-sample limit: refit every step on final-correct chains.

    The maximum-likelihood refit of step t is alpha_t' = P(step t correct | answer correct)
    = alpha_t (1 + (M-1) P_{-t}) / (1 + (M-1) P), with P = prod_s d_s and P_{-t} = prod_{s!=t} d_s.
    Wrong transitions stay uniform by symmetry, so the policy keeps the mixture form and
    d_t' = (M alpha_t' - 1) / (M-1) = (d_t + P_{-t} + (M-2) P) / (1 + (M-1) P), i.e.
    1 - d_t' = (1 - d_t)(1 - P_{-t}) / (1 + (M-1) P).
    For T = 3 and equal d: d' = ((M-2) d^3 + d^2 + d) / ((M-1) d^3 + 1), the published recursion.
    """
    M = check_states(M)
    ds = check_deltas(deltas)
    P = math.prod(ds)
    denom = 1 + (M - 1) * P
    # This form leaves a waiting step (P_{-t} = P = 0) exactly unchanged; min() guards rounding above 1.
    return [min(1.0, (d + p + (M - 2) * P) / denom) for d, p in zip(ds, _products_without(ds))]


def kept_wrong_step(deltas: Sequence[float], M: int) -> float:
    """Share of kept (final-correct) chains with at least one wrong step: 1 - prod_t alpha_t / J.

    A chain whose every step is correct ends correct, so P(all steps correct | kept) = prod alpha / J.
    """
    return 1 - math.prod(alphas(deltas, M)) / accuracy(deltas, M)


def effective_delta(accuracy: float, M: int, T: int) -> float:
    """The equal d per step that gives this final accuracy: d = ((M J - 1) / (M - 1))^(1/T).

    The inverse of J = (1 + (M-1) d^T) / M, for tasks whose steps cannot be checked; an accuracy at
    or below chance (1/M) gives 0.
    """
    M = check_states(M)
    T = check_count("number of steps T", T, 1)
    try:
        a = float(accuracy)
    except (TypeError, ValueError):
        a = math.nan
    if not (0.0 <= a <= 1.0):
        raise TheoryError(f"accuracy {accuracy} must be in [0, 1]")
    if a <= 1 / M:
        return 0.0
    return min(1.0, ((M * a - 1) / (M - 1)) ** (1 / T))


@dataclass
class Trajectory:
    """Per-iteration values of a STaR run; iteration 0 is the pre-trained policy.

    `kept_wrong_step` is None where nothing was kept (only possible in a finite-sample run).
    """

    iteration: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    deltas: list[list[float]] = field(default_factory=list)
    kept_wrong_step: list[float | None] = field(default_factory=list)

    def append(self, iteration: int, acc: float, ds: Sequence[float], kept_wrong: float | None) -> None:
        self.iteration.append(iteration)
        self.accuracy.append(float(acc))
        self.deltas.append([float(d) for d in ds])
        self.kept_wrong_step.append(None if kept_wrong is None else float(kept_wrong))

    def to_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "accuracy": self.accuracy,
            "deltas": self.deltas,
            "kept_wrong_step": self.kept_wrong_step,
        }


def trajectory(deltas: Sequence[float], M: int, iterations: int, target: float | None = None) -> Trajectory:
    """Exact accuracy, deltas and kept-wrong-step share for iterations 0..K of infinite-sample STaR.

    With `target`, stops early at the first iteration whose accuracy is >= target.
    """
    M = check_states(M)
    ds = check_deltas(deltas)
    iterations = check_count("iterations", iterations, 0)
    out = Trajectory()
    for k in range(iterations + 1):
        acc = accuracy(ds, M)
        out.append(k, acc, ds, kept_wrong_step(ds, M))
        if target is not None and acc >= target:
            break
        if k < iterations:
            ds = star_update(ds, M)
    return out


def iterations_to_reach(deltas: Sequence[float], M: int, target: float, max_iterations: int = 10_000) -> int | None:
    """Fewest STaR iterations after which accuracy >= target; None if it never gets there.

    None when STaR reaches a fixed point below the target (e.g. two or more steps at d = 0) or
    needs more than `max_iterations`.
    """
    M = check_states(M)
    ds = check_deltas(deltas)
    if not (0.0 <= target <= 1.0):
        raise TheoryError(f"target accuracy {target} must be in [0, 1]")
    for k in range(check_count("max_iterations", max_iterations, 0) + 1):
        if accuracy(ds, M) >= target:
            return k
        new = star_update(ds, M)
        if new == ds:  # a fixed point: nothing will ever change
            return None
        ds = new
    return None


@dataclass(frozen=True)
class Criterion:
    """Which steps improve in the next STaR iteration and whether STaR stalls for good."""

    improves: tuple[bool, ...]  # per step: P_{-t} > 0 and d_t < 1
    stalls: bool  # no step can ever improve again, below accuracy 1
    verdict: str


def _steps(ts: Sequence[int]) -> str:
    names = [str(t + 1) for t in ts]
    return "step " + names[0] if len(names) == 1 else "steps " + ", ".join(names[:-1]) + " and " + names[-1]


def criterion(deltas: Sequence[float], M: int) -> Criterion:
    """When does STaR improve? d_t' - d_t = P_{-t} (1 - d_t)(1 + (M-1) d_t) / (1 + (M-1) P) >= 0.

    Step t improves iff P_{-t} > 0 and d_t < 1. One step at d = 0 jumps to P_{-t} while the others
    wait one iteration; with two or more steps at d = 0 every P_{-t} is 0 and STaR stalls for good
    at chance accuracy 1/M. Otherwise every d_t rises to 1 and the accuracy converges to 1.
    """
    M = check_states(M)
    ds = check_deltas(deltas)
    without = _products_without(ds)
    improves = tuple(p > 0 and d < 1 for d, p in zip(ds, without))
    zeros = [t for t, d in enumerate(ds) if d == 0]
    perfect = all(d == 1 for d in ds)
    stalls = not any(improves) and not perfect  # a perfect policy has nothing left to improve: no stall
    if perfect:
        verdict = "every step is always correct (d = 1): accuracy is already 1, nothing to improve"
    elif stalls:
        verdict = (
            f"{_steps(zeros)} are at d = 0 (uniform guessing): a correct answer says nothing about any "
            f"step, so STaR stalls for good at chance accuracy 1/M = {1 / M:.4g}"
        )
    elif zeros:
        t = zeros[0]
        rest = [s for s in range(len(ds)) if s != t and ds[s] < 1]
        verdict = f"{_steps(zeros)} is at d = 0: it jumps to d = {without[t]:.4g} next iteration"
        if rest:
            verdict += f" while {_steps(rest)} wait one iteration"
        verdict += "; then STaR improves every iteration and the accuracy converges to 1"
    else:
        verdict = "every step has d > 0: STaR improves the accuracy every iteration and it converges to 1"
    return Criterion(improves=improves, stalls=stalls, verdict=verdict)


def estimate_deltas(checks: list[list[bool]], M: int) -> list[float]:
    """Per step of sampled chains: d_hat = (M alpha_hat - 1) / (M - 1), alpha_hat = the share of
    trajectories whose step is correct (each check: that step's state is the kernel's next one)."""
    if not checks:
        raise ValueError("estimate_deltas needs at least one trajectory of step checks")
    T = len(checks[0])
    if any(len(c) != T for c in checks):
        raise ValueError(f"every trajectory needs the same number of step checks (the first has {T})")
    alpha = [sum(c[t] for c in checks) / len(checks) for t in range(T)]
    return [(M * a - 1) / (M - 1) for a in alpha]
