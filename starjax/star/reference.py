"""A run's metrics against a published one: `starjax star CONFIG --reference FILE` ends with one
line, `matches LABEL: yes` or `no` with the first difference (`make demo` compares with the
README's seed-0 tables, configs/demo_reference.json).

A reference file holds the label, the seed and one table per CPU type the run was published on:
XLA:CPU's float32 products round differently with and without AVX-512 (docs/star.md#reproducibility),
so a run reproduces bit for bit on its own CPU type only. Each table holds the per-iteration
metrics a run must reproduce exactly: everything in metrics.jsonl but wall times and compile
counts, which no two runs share. A run matches when it equals any one of the tables.
"""

from __future__ import annotations

import json
from pathlib import Path

from starjax.errors import ConfigError

# Differ between two runs of one config: wall times, compile counts, and the fine-tune curves
# (only the steps this process ran: a fine-tune resumed from a checkpoint logs the steps after it)
UNSHARED = ("seconds", "compilations", "fine_tune")


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in UNSHARED}


def load_reference(path: str | Path) -> dict:
    """The reference file, checked; a usage error (one line) when it is missing or malformed."""
    p = Path(path)
    try:
        ref = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--reference {p}: no such file") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"--reference {p} is not a JSON file: {e}") from None
    if not (
        isinstance(ref, dict)
        and isinstance(ref.get("label"), str)
        and isinstance(ref.get("seed"), int)
        and isinstance(ref.get("tables"), list)
        and ref["tables"]
        and all(_is_table(t) for t in ref["tables"])
    ):
        raise ConfigError(
            f'--reference {p} needs "label", "seed" and "tables" (each a "cpu" and its "iterations", '
            "one metrics record each); write it with scripts/demo_reference.py"
        )
    return ref


def _is_table(t: object) -> bool:
    return (
        isinstance(t, dict)
        and isinstance(t.get("cpu"), str)
        and isinstance(t.get("iterations"), list)
        and all(isinstance(r, dict) for r in t["iterations"])
    )


def with_table(ref: dict | None, history: list[dict], label: str, seed: int, cpu: str) -> dict:
    """`ref` (or a new reference) with the table for `cpu` set to a finished run's history."""
    if ref is not None and (ref["label"], ref["seed"]) != (label, seed):
        raise ValueError(f"the reference is {ref['label']} seed {ref['seed']}, not {label} seed {seed}")
    tables = [t for t in (ref or {}).get("tables", []) if t["cpu"] != cpu]
    tables.append({"cpu": cpu, "iterations": [comparable(r) for r in history]})
    return {"label": label, "seed": seed, "tables": tables}


def compare(history: list[dict], seed: int, ref: dict) -> str:
    """`matches LABEL: yes (CPU)` for the table the run equals, or `no` and why: the first
    difference from the table it follows longest."""
    label = ref["label"]
    if seed != ref["seed"]:
        return f"matches {label}: no ({label} shows seed {ref['seed']}; this run is seed {seed})"
    got = [comparable(r) for r in history]
    misses = []
    for t in ref["tables"]:
        miss = _first_difference(got, t["iterations"])
        if miss is None:
            return f"matches {label}: yes (its table for {t['cpu']})"
        misses.append((miss[0], t["cpu"], miss[1]))
    agree, cpu, why = max(misses, key=lambda m: m[0])  # max keeps the first of equals
    if agree == 0:  # the base itself differs: most likely a CPU type no table was measured on
        why += "; no table's base: bit-identical runs need a CPU type with a table, docs/star.md#reproducibility"
    return f"matches {label}: no ({why}; {label}'s table for {cpu})"


def _first_difference(got: list[dict], want: list[dict]) -> tuple[int, str] | None:
    """None when equal, else (how many iterations agree, what differs first)."""
    for i, (g, w) in enumerate(zip(got, want)):
        for key in sorted(set(g) | set(w)):
            if g.get(key) != w.get(key):
                return i, f"iteration {w.get('iteration')}: {key} {_short(g.get(key))} here, {_short(w.get(key))} there"
    if len(got) != len(want):
        return min(len(got), len(want)), f"{len(got) - 1} iterations here, {len(want) - 1} there"
    return None


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)
