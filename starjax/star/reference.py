"""A run's metrics against a published one: `starjax star CONFIG --reference FILE` ends with one
line, `matches LABEL: yes` or `no` with the first difference (`make demo` compares with the
README's seed-0 table, configs/demo_reference.json).

A reference file holds the label, the seed and the per-iteration metrics a run must reproduce
exactly: everything in metrics.jsonl but wall times and compile counts, which no two runs share.
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
        and isinstance(ref.get("iterations"), list)
        and all(isinstance(r, dict) for r in ref["iterations"])
    ):
        raise ConfigError(
            f'--reference {p} needs "label", "seed" and "iterations" (one metrics record each); '
            "write it with scripts/demo_reference.py"
        )
    return ref


def reference_of(history: list[dict], label: str, seed: int) -> dict:
    """What a reference file holds for a finished run's history."""
    return {"label": label, "seed": seed, "iterations": [comparable(r) for r in history]}


def compare(history: list[dict], seed: int, ref: dict) -> str:
    """`matches LABEL: yes`, or `no` and why (the first differing iteration and key)."""
    label, want = ref["label"], ref["iterations"]
    if seed != ref["seed"]:
        return f"matches {label}: no ({label} shows seed {ref['seed']}; this run is seed {seed})"
    got = [comparable(r) for r in history]
    for g, w in zip(got, want):
        for key in sorted(set(g) | set(w)):
            if g.get(key) != w.get(key):
                return (
                    f"matches {label}: no (iteration {w.get('iteration')}: {key} {_short(g.get(key))}, "
                    f"{label} {_short(w.get(key))})"
                )
    if len(got) != len(want):
        return f"matches {label}: no ({len(got) - 1} iterations here, {len(want) - 1} in {label})"
    return f"matches {label}: yes"


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)
