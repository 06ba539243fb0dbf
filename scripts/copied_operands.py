"""How often an addition run's samples restate the question on the scratchpad's first line (the
operands line every later step reads), per iteration, bare or hinted, and digit count; and how
many reach the right answer all the same, which STaR keeps.

    .venv/bin/python scripts/copied_operands.py runs/demo
    .venv/bin/python scripts/copied_operands.py runs/demo --iterations 1 6 11 --digits 4 5
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from starjax.run_dir import RunDir
from starjax.tasks.addition import restates_operands


def count(samples_file: Path) -> dict[tuple[str, str], list[int]]:
    """{(bare|hinted, digits): [samples, operands copied, correct, correct with miscopied operands]}."""
    out: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    for line in samples_file.open():
        r = json.loads(line)
        copied = restates_operands(r["question"], r["completion"])
        row = out["hinted" if r["hinted"] else "bare", r["difficulty"]]
        row[0] += 1
        row[1] += copied
        row[2] += bool(r["correct"])
        row[3] += bool(r["correct"]) and not copied
    return out


def table(run: RunDir, iterations: list[int], digits: list[str] | None) -> str:
    lines = [
        "| iteration | samples | digits | samples | operands copied | correct | correct, operands miscopied |",
        "|---|---|---|---|---|---|---|",
    ]
    for it in iterations:
        for (kind, d), (n, copied, correct, miscopied) in sorted(count(run.samples(it)).items()):
            if digits is None or d in digits:
                lines.append(f"| {it} | {kind} | {d} | {n} | {copied / n:.0%} | {correct} | {miscopied} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished (or partly finished) addition run directory")
    parser.add_argument("--iterations", nargs="+", type=int, help="default: every iteration with samples")
    parser.add_argument("--digits", nargs="+", help="digit counts to show (default: all)")
    args = parser.parse_args()
    run = RunDir.at(args.run)
    found = run.sampled_iterations()
    if not found:
        print(f"error: {args.run} has no samples (an addition run directory holds samples/iter_N.jsonl)", file=sys.stderr)
        return 2
    missing = sorted(set(args.iterations or []) - set(found))
    if missing:
        print(f"error: {args.run} has no samples for iteration {missing[0]} (it has {found[0]}-{found[-1]})", file=sys.stderr)
        return 2
    print(table(run, args.iterations or found, args.digits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
