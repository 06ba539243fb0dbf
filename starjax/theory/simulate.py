"""Finite-sample STaR on RL-STaR's tabular model: sample chains, keep final-correct ones, refit by counting.

This checks the closed forms in `rlstar` against what a finite STaR loop does, and shows the
sampling noise a run of a given size should expect.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from starjax.theory.rlstar import TheoryError, Trajectory, alphas, check_count, check_deltas, check_states

# Trajectories drawn per numpy call: bounds memory for any `samples` without changing the result
# for a given seed and size.
_CHUNK_VALUES = 1 << 22


def _draw(rng: np.random.Generator, starts: np.ndarray, alpha: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray]:
    """Chains from the tabular policy: step correctness (n, T) and final correctness (n,).

    From state s the policy stays on s (the correct next state) w.p. alpha_t, else it moves to one
    of the M-1 other states uniformly, i.e. to (s + u) mod M with u uniform in 1..M-1.
    """
    n, T = len(starts), len(alpha)
    stay = rng.random((n, T)) < alpha
    jumps = np.where(stay, 0, rng.integers(1, M, size=(n, T)))
    states = np.concatenate([starts[:, None], (starts[:, None] + np.cumsum(jumps, axis=1)) % M], axis=1)
    step_correct = states[:, 1:] == states[:, :-1]
    return step_correct, states[:, -1] == states[:, 0]


def simulate(
    deltas: Sequence[float], M: int, iterations: int, samples: int, seed: int, questions: int | None = None
) -> Trajectory:
    """STaR with `samples` chains per question per iteration; iteration 0 is the pre-trained policy.

    Each iteration draws `samples` chains for each of `questions` start states (default M, every
    identity once) from the current policy, keeps those whose final answer is correct, and refits
    every step by maximum likelihood within the mixture form: alpha_t' = (kept chains whose step t
    was correct) / (kept chains), pooled over questions, and d_t' = (M alpha_t' - 1) / (M - 1).

    Reported per iteration: the accuracy measured on that iteration's draw, the policy's deltas,
    and the share of kept chains with a wrong step (None when nothing was kept).
    When nothing is kept the data say nothing about the steps, so the policy is left unchanged.
    A finite draw can put alpha_t' below 1/M; the resulting d_t' < 0 (worse than guessing on that
    step) is a valid policy and is reported as is, not clipped.
    """
    M = check_states(M)
    ds = check_deltas(deltas)
    alpha = np.array(alphas(ds, M), dtype=np.float64)
    T = len(ds)
    iterations = check_count("iterations", iterations, 0)
    samples = check_count("samples", samples, 1)
    questions = M if questions is None else check_count("questions", questions, 1)
    if questions > M:
        raise TheoryError(f"questions={questions} must be at most M={M}: each question is one start identity")
    rng = np.random.default_rng(check_count("seed", seed, 0))
    total = questions * samples
    chunk = max(1, _CHUNK_VALUES // (T + 1))
    out = Trajectory()
    for k in range(iterations + 1):
        kept = 0
        kept_all_correct = 0
        kept_step_correct = np.zeros(T, dtype=np.int64)
        for lo in range(0, total, chunk):
            starts = np.arange(lo, min(lo + chunk, total)) // samples  # question index = start identity
            step_correct, final_correct = _draw(rng, starts, alpha, M)
            kept_steps = step_correct[final_correct]
            kept += len(kept_steps)
            kept_all_correct += int(kept_steps.all(axis=1).sum())
            kept_step_correct += kept_steps.sum(axis=0)
        wrong = None if kept == 0 else 1 - kept_all_correct / kept
        out.append(k, kept / total, ds, wrong)
        if kept:
            alpha = kept_step_correct / kept
            ds = list((M * alpha - 1) / (M - 1))
    return out
