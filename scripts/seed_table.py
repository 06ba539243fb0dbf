"""Markdown tables of several STaR runs of one recipe (one run directory per seed): held-out
accuracy per iteration for each run, the mean and the range, and per run the rise from the base
and the difficulties the base could not do that the last policy does.

    .venv/bin/python scripts/seed_table.py runs/demo_s0 runs/demo_s1 runs/demo_s2
    .venv/bin/python scripts/seed_table.py runs/demo_s{0,1,2} --versus runs/norat_s{0,1,2}

With --versus, a second recipe's runs (same seeds, in the same order) are tabulated too, with
the per-seed difference of their last iterations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from omegaconf import OmegaConf

from starjax.star.report import read_metrics

UNSOLVED, SOLVED = 0.10, 0.40  # "the base could not do it" / "the last policy does"


def load(run_dirs: list[Path]) -> list[tuple[str, list[dict]]]:
    runs = []
    for d in run_dirs:
        if not (d / "metrics.jsonl").is_file():
            raise SystemExit(f"error: {d / 'metrics.jsonl'} not found")
        runs.append((f"seed {OmegaConf.load(d / 'config.yaml').seed}", read_metrics(d)))
    return runs


def gains(history: list[dict]) -> str:
    """Difficulties below UNSOLVED at iteration 0 and above SOLVED at the last iteration."""
    first, last = history[0]["test_accuracy_by_difficulty"], history[-1]["test_accuracy_by_difficulty"]
    won = [f"{d}: {first[d]:.2f} -> {last[d]:.2f}" for d in first if first[d] < UNSOLVED and last.get(d, 0) > SOLVED]
    return ", ".join(won) or "none"


def table(runs: list[tuple[str, list[dict]]]) -> str:
    its = [r["iteration"] for r in runs[0][1]]
    if any([r["iteration"] for r in h] != its for _, h in runs):
        raise SystemExit("error: the runs have different iterations; finish them first")
    acc = [[r["test_accuracy"] for r in h] for _, h in runs]
    lines = ["| run | " + " | ".join(map(str, its)) + " | rise | newly solved digits |", "|---" * (len(its) + 3) + "|"]
    for (name, h), row in zip(runs, acc):
        lines.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in row) + f" | {row[-1] - row[0]:+.3f} | {gains(h)} |")
    cols = list(zip(*acc))
    rises = [row[-1] - row[0] for row in acc]
    lines.append("| mean | " + " | ".join(f"{statistics.mean(c):.3f}" for c in cols) + f" | {statistics.mean(rises):+.3f} | |")
    lines.append(
        "| range | " + " | ".join(f"{min(c):.3f}-{max(c):.3f}" for c in cols) + f" | {min(rises):+.3f} to {max(rises):+.3f} | |"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--versus", nargs="+", type=Path, default=[])
    args = parser.parse_args()
    runs = load(args.runs)
    print(table(runs))
    if args.versus:
        other = load(args.versus)
        print("\n" + table(other) + "\n")
        for (name, a), (_, b) in zip(runs, other):
            print(
                f"{name}: last iteration {a[-1]['test_accuracy']:.3f} against {b[-1]['test_accuracy']:.3f} "
                f"({a[-1]['test_accuracy'] - b[-1]['test_accuracy']:+.3f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
