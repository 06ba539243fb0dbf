"""`starjax theory`: RL-STaR's accuracy per STaR iteration, exact or simulated, as a table, JSON or PNG."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from starjax.errors import ConfigError
from starjax.theory.rlstar import (
    TheoryError,
    Trajectory,
    check_count,
    check_deltas,
    check_states,
    criterion,
    iterations_to_reach,
    trajectory,
)
from starjax.theory.simulate import simulate

REPORT_TARGET = 0.99  # the accuracy whose iteration count the table reports
MAX_REPORT_ITERATIONS = 10_000


def _deltas(args: argparse.Namespace) -> list[float]:
    T = check_count("--steps", args.steps, 1)
    given = list(args.delta)
    if len(given) == 1:
        given = given * T  # one --delta: every step gets it
    elif len(given) != T:
        raise TheoryError(f"got {len(given)} --delta values for --steps {T}: give one (used for every step) or exactly {T}")
    return check_deltas(given, T)


def _plot_path(plot: str | None) -> Path | None:
    if plot is None:
        return None
    path = Path(plot)
    if path.suffix.lower() != ".png":
        raise TheoryError(f"--plot {plot!r} writes a PNG: give a file name ending in .png")
    if not path.parent.is_dir():
        raise TheoryError(f"--plot {plot!r}: directory {str(path.parent)!r} does not exist; create it first")
    return path


def _number(x: float | None) -> str:
    return "-" if x is None else f"{x:.6f}"


def format_table(run: Trajectory, exact: Trajectory | None = None) -> str:
    """Aligned columns: iteration, accuracy (and the exact one beside a simulation), kept_wrong_step, d_t."""
    T = len(run.deltas[0])
    header = ["iteration", "accuracy"] + (["exact"] if exact else []) + ["kept_wrong_step"]
    header += [f"d_{t + 1}" for t in range(T)]
    rows = []
    for i, k in enumerate(run.iteration):
        row = [str(k), _number(run.accuracy[i])] + ([_number(exact.accuracy[i])] if exact else [])
        rows.append(row + [_number(run.kept_wrong_step[i])] + [_number(d) for d in run.deltas[i]])
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def run_theory(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except TheoryError as e:
        raise ConfigError(str(e)) from None


def _run(args: argparse.Namespace) -> int:
    M = check_states(args.states)
    deltas = _deltas(args)
    iterations = check_count("--iterations", args.iterations, 0)
    plot = _plot_path(args.plot)
    exact = trajectory(deltas, M, iterations)
    simulated = None
    if args.samples is not None:
        simulated = simulate(
            deltas, M, iterations, check_count("--samples", args.samples, 1), check_count("--seed", args.seed, 0)
        )
    run = simulated or exact
    title = f"RL-STaR: M={M} states, T={len(deltas)} steps, d={_short(deltas)}"
    if plot:
        from starjax.theory.plot import plot_accuracy  # matplotlib only when a plot is asked for

        plot_accuracy(plot, exact, title, simulated)
    if args.json:
        print(json.dumps(run.to_dict()))
        if plot:
            print(f"starjax: wrote {plot}", file=sys.stderr)
        return 0
    mode = (
        "exact (infinite-sample) STaR"
        if simulated is None
        else (f"finite-sample STaR, {args.samples} chains x {M} questions per iteration, seed {args.seed}")
    )
    print(f"{title}; {mode}")
    print(format_table(run, exact if simulated else None))
    verdict = criterion(deltas, M)
    print(f"criterion: {verdict.verdict}")
    reach = iterations_to_reach(deltas, M, REPORT_TARGET, MAX_REPORT_ITERATIONS)
    if reach is not None:
        when = f"after {reach} iteration{'' if reach == 1 else 's'}"
    else:
        when = "never (STaR stalls)" if verdict.stalls else f"not within {MAX_REPORT_ITERATIONS} iterations"
    print(f"exact accuracy >= {REPORT_TARGET}: {when}")
    if plot:
        print(f"wrote {plot}")
    return 0


def _short(deltas: list[float]) -> str:
    return f"{deltas[0]:g}" if len(set(deltas)) == 1 else "(" + ", ".join(f"{d:g}" for d in deltas) + ")"
