"""Writes the table for this CPU type into the reference file `make demo` compares with
(configs/demo_reference.json) from a finished demo run, keeping the other CPU types' tables,
and prints the table `make demo` prints, which README.md shows verbatim.

    .venv/bin/python scripts/demo_reference.py runs/demo --cpu "AMD EPYC without AVX-512"

Run it only on a seed-0 `make demo` run from a fresh clone; tests/test_reference.py checks that
README.md shows exactly these tables. XLA:CPU rounds differently with and without AVX-512, so
each CPU type has a table of its own (docs/star.md#reproducibility).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from starjax.errors import ConfigError
from starjax.star.reference import load_reference, with_table
from starjax.star.report import read_metrics, table

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--cpu", required=True, help="the CPU type the run was made on, as the README names it")
    parser.add_argument("--out", type=Path, default=ROOT / "configs" / "demo_reference.json")
    args = parser.parse_args()
    if not (args.run_dir / "metrics.jsonl").is_file():
        print(f"error: {args.run_dir / 'metrics.jsonl'} not found; give the directory of a finished demo run", file=sys.stderr)
        return 2
    from omegaconf import OmegaConf

    seed = OmegaConf.load(args.run_dir / "config.yaml").seed
    history = read_metrics(args.run_dir)
    try:
        old = load_reference(args.out) if args.out.exists() else None
        ref = with_table(old, history, "README", seed, args.cpu)
    except ConfigError as e:  # a malformed --out file: one line, the file left as it is
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}; {args.out} holds the README's seed-0 tables", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(ref, indent=1) + "\n")
    print(table(ref["tables"][-1]["iterations"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
