"""RL-STaR theory: closed forms against brute-force enumeration of an explicit state graph, the
published T=3 recursion through the CLI, the improvement criterion, and the finite-sample simulator."""

import itertools
import json
import math

import numpy as np
import pytest

from starjax.cli import main
from starjax.theory import (
    TheoryError,
    accuracy,
    alphas,
    criterion,
    effective_delta,
    iterations_to_reach,
    kept_wrong_step,
    simulate,
    star_update,
    trajectory,
)

# ---- brute force over an explicit state graph ------------------------------------------------


def transition_tables(deltas, M, correct_next):
    """P_t[s, s'] for each step: alpha_t on the correct successor of s, beta_t on each other state."""
    tables = []
    for d, succ in zip(deltas, correct_next):
        P = np.full((M, M), (1 - d) / M)
        P[np.arange(M), succ] = (1 + (M - 1) * d) / M
        assert np.allclose(P.sum(axis=1), 1)
        tables.append(P)
    return tables


def enumerate_star(deltas, M, correct_next=None):
    """Every chain of every question (start state drawn uniformly), weighted by its probability.

    Returns the accuracy, the share of kept chains with a wrong step, and the maximum-likelihood
    refit of every per-state transition row from the kept (final-correct) chains, pooled over
    questions: row s of step t = expected counts of s -> s' among kept chains, normalised.
    """
    T = len(deltas)
    correct_next = [np.arange(M)] * T if correct_next is None else correct_next
    tables = transition_tables(deltas, M, correct_next)
    kept_mass = kept_wrong_mass = 0.0
    counts = [np.zeros((M, M)) for _ in range(T)]
    for s0 in range(M):
        answer = s0
        for succ in correct_next:
            answer = succ[answer]
        for path in itertools.product(range(M), repeat=T):
            states = (s0, *path)
            if states[-1] != answer:
                continue
            p = 1 / M * math.prod(tables[t][states[t], states[t + 1]] for t in range(T))
            kept_mass += p
            if any(states[t + 1] != correct_next[t][states[t]] for t in range(T)):
                kept_wrong_mass += p
            for t in range(T):
                counts[t][states[t], states[t + 1]] += p
    refit = [c / c.sum(axis=1, keepdims=True) for c in counts]
    return kept_mass, kept_wrong_mass / kept_mass, refit


CASES = [
    (2, [0.3]),
    (3, [0.0]),
    (5, [0.7]),
    (4, [1.0]),
    (2, [0.3, 0.8]),
    (4, [0.0, 0.6]),
    (3, [1.0, 0.2]),
    (5, [0.0, 0.0]),
    (3, [0.2, 0.5, 0.9]),
    (4, [0.2, 0.0, 0.5]),
    (5, [0.0, 0.0, 0.7]),
    (2, [1.0, 1.0, 0.4]),
    (4, [0.05, 0.6, 0.35]),
    (3, [0.1, 0.4, 0.6, 0.3]),
    (4, [0.5, 0.0, 1.0, 0.25]),
    (5, [0.2, 0.9, 0.4, 0.6]),
    (2, [0.0, 0.0, 0.0, 0.0]),
]


@pytest.mark.parametrize("M, deltas", CASES)
def test_closed_forms_match_brute_force(M, deltas):
    acc, wrong, refit = enumerate_star(deltas, M)
    assert accuracy(deltas, M) == pytest.approx(acc, abs=1e-12)
    assert kept_wrong_step(deltas, M) == pytest.approx(wrong, abs=1e-12)
    new = star_update(deltas, M)
    for t, R in enumerate(refit):
        correct = np.diag(R)
        off = R[~np.eye(M, dtype=bool)]
        # The refit stays in mixture form (same alpha from every state, wrong states uniform),
        # so describing it by one d per step, as the closed form does, loses nothing.
        assert np.allclose(correct, correct[0], atol=1e-12) and np.allclose(off, off[0], atol=1e-12)
        assert correct[0] == pytest.approx(alphas(new, M)[t], abs=1e-12)
        assert (M * correct[0] - 1) / (M - 1) == pytest.approx(new[t], abs=1e-12)


@pytest.mark.parametrize("M, deltas", [(3, [0.2, 0.5, 0.9]), (4, [0.3, 0.0, 0.6]), (5, [0.4, 0.7])])
def test_relabelling_the_correct_successors_changes_nothing(M, deltas):
    rng = np.random.default_rng(0)
    perms = [rng.permutation(M) for _ in deltas]
    assert any((p != np.arange(M)).any() for p in perms)
    acc, wrong, refit = enumerate_star(deltas, M, perms)
    assert acc == pytest.approx(accuracy(deltas, M), abs=1e-12)
    assert wrong == pytest.approx(kept_wrong_step(deltas, M), abs=1e-12)
    for t, (R, succ) in enumerate(zip(refit, perms)):
        assert np.allclose(R[np.arange(M), succ], alphas(star_update(deltas, M), M)[t], atol=1e-12)


@pytest.mark.parametrize("M", [2, 5, 64])
@pytest.mark.parametrize("d", [0.0, 0.1, 0.2, 0.55, 1.0])
def test_accuracy_is_the_published_t3_polynomial(M, d):
    a, b = (1 + (M - 1) * d) / M, (1 - d) / M
    assert accuracy([d] * 3, M) == pytest.approx(a**3 + 3 * (M - 1) * a * b**2 + (M - 1) * (M - 2) * b**3, abs=1e-15)


def test_update_difference_formula_and_monotonicity():
    rng = np.random.default_rng(1)
    for _ in range(200):
        M, T = int(rng.integers(2, 100)), int(rng.integers(1, 7))
        ds = list(rng.random(T))
        P = math.prod(ds)
        new = star_update(ds, M)
        for t, (d, d2) in enumerate(zip(ds, new)):
            p_t = math.prod(ds[:t] + ds[t + 1 :])
            assert d2 - d == pytest.approx(p_t * (1 - d) * (1 + (M - 1) * d) / (1 + (M - 1) * P), abs=1e-12)
            assert d <= d2 <= 1
        assert accuracy(new, M) > accuracy(ds, M)


# ---- the published recursion through the command ---------------------------------------------


@pytest.mark.parametrize("d", [0.2, 0.1])
def test_cli_json_follows_the_published_t3_recursion(capsys, d):
    M = 64
    assert main(["theory", "--states", "64", "--steps", "3", "--delta", str(d), "--iterations", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["iteration"] == list(range(11))
    assert set(out) == {"iteration", "accuracy", "deltas", "kept_wrong_step"}
    for k in range(11):
        a, b = (1 + (M - 1) * d) / M, (1 - d) / M
        J = a**3 + 3 * (M - 1) * a * b**2 + (M - 1) * (M - 2) * b**3
        assert out["accuracy"][k] == pytest.approx(J, abs=1e-12)
        assert out["deltas"][k] == pytest.approx([d] * 3, abs=1e-12)
        assert out["kept_wrong_step"][k] == pytest.approx(1 - a**3 / J, abs=1e-12)
        d = ((M - 2) * d**3 + d**2 + d) / ((M - 1) * d**3 + 1)
    assert out["accuracy"][-1] > 0.999


def test_cli_table_prints_every_iteration_and_the_verdict(capsys):
    assert (
        main(
            ["theory", "--states", "64", "--steps", "3", "--delta", "0.2", "--delta", "0", "--delta", "0.2", "--iterations", "3"]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["iteration", "accuracy", "kept_wrong_step", "d_1", "d_2", "d_3"]
    assert lines[3].split()[:2] == ["1", "0.017200"] and lines[3].split()[3:] == ["0.200000", "0.040000", "0.200000"]
    assert len({len(line) for line in lines[1:6]}) == 1  # aligned columns
    assert "step 2 is at d = 0" in lines[6] and "wait one iteration" in lines[6]
    assert lines[7] == "exact accuracy >= 0.99: after 5 iterations"


def test_cli_simulation_json_and_plot(tmp_path, capsys):
    png = tmp_path / "acc.png"
    args = [
        "theory",
        "--states",
        "8",
        "--steps",
        "2",
        "--delta",
        "0.4",
        "--iterations",
        "3",
        "--samples",
        "200",
        "--seed",
        "3",
        "--json",
        "--plot",
        str(png),
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == simulate([0.4, 0.4], 8, 3, 200, 3).to_dict()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--states", "4", "--steps", "3", "--delta", "1.5"], "delta for step 1 is 1.5: it must be in [0, 1]"),
        (["--states", "1", "--steps", "3", "--delta", "0.2"], "number of states M=1 must be an integer >= 2"),
        (["--states", "4", "--steps", "3", "--delta", "0.2", "--delta", "0.3"], "got 2 --delta values for --steps 3"),
        (["--states", "4", "--steps", "0", "--delta", "0.2"], "--steps=0 must be an integer >= 1"),
        (["--states", "4", "--steps", "2", "--delta", "0.2", "--samples", "0"], "--samples=0 must be an integer >= 1"),
        (["--states", "4", "--steps", "2", "--delta", "0.2", "--plot", "/no/such/dir/a.png"], "does not exist"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(capsys, flags, message):
    assert main(["theory", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("starjax: error: ") and message in err[0]


# ---- the criterion -----------------------------------------------------------------------------


def test_one_zero_step_jumps_and_the_others_wait_one_iteration():
    ds, M = [0.2, 0.0, 0.5], 64
    c = criterion(ds, M)
    assert c.improves == (False, True, False) and not c.stalls
    assert "step 2 is at d = 0" in c.verdict and "jumps to d = 0.1" in c.verdict
    once = star_update(ds, M)
    assert once == [0.2, pytest.approx(0.1, abs=1e-15), 0.5]
    assert all(b > a for a, b in zip(once, star_update(once, M)))
    assert criterion(once, M).improves == (True, True, True)
    assert iterations_to_reach(ds, M, 0.99) is not None


def test_two_zero_steps_stall_for_good():
    ds, M = [0.0, 0.7, 0.0], 10
    c = criterion(ds, M)
    assert c.stalls and c.improves == (False, False, False) and "stalls for good" in c.verdict
    assert star_update(ds, M) == ds
    assert trajectory(ds, M, 5).accuracy == [0.1] * 6
    assert iterations_to_reach(ds, M, 0.5) is None
    assert iterations_to_reach(ds, M, 0.1) == 0


def test_nothing_to_improve_and_a_single_step():
    c = criterion([1.0, 1.0], 3)
    assert not c.stalls and c.improves == (False, False) and "nothing to improve" in c.verdict
    # T = 1: a correct answer means the one step was correct, so one iteration makes it perfect.
    assert star_update([0.0], 5) == [1.0] and criterion([0.0], 5).improves == (True,)


def test_iterations_to_reach_agrees_with_the_trajectory():
    ds, M = [0.15, 0.3, 0.1], 16
    run = trajectory(ds, M, 40)
    for target in (0.2, 0.5, 0.9, 0.999):
        k = iterations_to_reach(ds, M, target)
        assert k == next(i for i, a in enumerate(run.accuracy) if a >= target)
    assert trajectory(ds, M, 40, target=0.9).iteration[-1] == iterations_to_reach(ds, M, 0.9)
    assert iterations_to_reach(ds, M, 1.0, max_iterations=2) is None


def test_effective_delta_inverts_accuracy():
    for M, T, d in [(64, 3, 0.2), (4, 1, 0.9), (10, 5, 0.5)]:
        assert effective_delta(accuracy([d] * T, M), M, T) == pytest.approx(d, abs=1e-12)
    assert effective_delta(1 / 64, 64, 3) == 0.0 and effective_delta(0.0, 64, 3) == 0.0
    assert effective_delta(1.0, 64, 3) == 1.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: accuracy([0.2, -0.1], 4), "delta for step 2 is -0.1"),
        (lambda: accuracy([0.2], 1), "M=1 must be an integer >= 2"),
        (lambda: accuracy([0.2], 2.5), "M=2.5 must be an integer"),
        (lambda: star_update([], 4), "at least one step"),
        (lambda: trajectory([0.2], 4, -1), "iterations=-1"),
        (lambda: effective_delta(1.2, 4, 2), "accuracy 1.2 must be in [0, 1]"),
        (lambda: effective_delta(0.5, 4, 0), "T=0 must be an integer >= 1"),
        (lambda: iterations_to_reach([0.2], 4, 2.0), "target accuracy 2.0"),
        (lambda: simulate([0.2], 4, 1, 10, 0, questions=5), "questions=5 must be at most M=4"),
    ],
)
def test_bad_arguments_raise_one_line_theory_errors(call, message):
    with pytest.raises(TheoryError) as e:
        call()
    assert message in str(e.value) and "\n" not in str(e.value)


# ---- the finite-sample simulator ---------------------------------------------------------------


def test_simulation_approaches_the_exact_curve():
    ds, M, K = [0.3, 0.5, 0.2], 8, 4
    exact = trajectory(ds, M, K)
    sim = simulate(ds, M, K, samples=25_000, seed=0)  # 200k chains per iteration
    assert sim.iteration == exact.iteration and sim.deltas[0] == exact.deltas[0]
    # Standard errors here are below ~0.004 for every quantity; 0.03 is several of them, and a
    # refit on all chains (not only final-correct ones) or a biased count would miss it.
    assert np.allclose(sim.accuracy, exact.accuracy, atol=0.03)
    assert np.allclose(sim.deltas, exact.deltas, atol=0.03)
    assert np.allclose(sim.kept_wrong_step, exact.kept_wrong_step, atol=0.03)


def test_simulation_is_deterministic_for_a_seed():
    a = simulate([0.3, 0.3], 6, 3, samples=50, seed=7)
    assert a == simulate([0.3, 0.3], 6, 3, samples=50, seed=7)
    assert a != simulate([0.3, 0.3], 6, 3, samples=50, seed=8)


def test_simulation_keeps_the_policy_when_nothing_is_kept():
    sim = simulate([0.0, 0.0], 1000, 6, samples=1, seed=0, questions=1)
    empty = [k for k, a in enumerate(sim.accuracy[:-1]) if a == 0]
    assert empty  # P(kept) = 1/1000 per iteration: most draws keep nothing
    for k in empty:
        assert sim.kept_wrong_step[k] is None and sim.deltas[k + 1] == sim.deltas[k]


def test_diagnose_does_not_warn_for_a_perfect_policy(capsys):
    from starjax.star.diagnose import _report

    _report("all", 3, [1.0, 1.0], 10, 2)
    out = capsys.readouterr().out
    assert "WARNING" not in out and "nothing to improve" in out
    _report("all", 3, [0.0, 0.0], 10, 2)
    assert "WARNING" in capsys.readouterr().out
