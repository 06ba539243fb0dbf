"""Data rows (JSONL objects, TFDS examples) to `Problem`s: malformed rows are skipped and counted
by reason, never fatal; a held-out test split is chosen by a hash of the question text, so a
row's side never changes when rows are added or removed, and a question is never on both sides."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterator, Mapping

from starjax.data_files import UNPARSABLE, held_out
from starjax.errors import ConfigError
from starjax.tasks.base import Problem


def scalar_text(value: Any) -> str | None:
    """Text of a string, bytes or number (JSON ints, numpy scalars); None for anything else."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # a bool is an int to Python, never an answer
        return None
    if isinstance(value, (int, float)):
        return str(value)
    item = getattr(value, "item", None)  # numpy scalar (TFDS int/float features)
    if callable(item) and getattr(value, "shape", None) == ():
        return scalar_text(item())
    return None


def to_problem(row: Any, uid: str, fields: Mapping[str, str]) -> Problem | str:
    """The row as a Problem, or the reason it is malformed (fields maps our names to the row's)."""
    if row is UNPARSABLE:
        return "unparsable JSON"
    if not isinstance(row, Mapping):
        return "not an object"
    text: dict[str, str] = {}
    for key in ("question", "answer"):
        name = fields.get(key, key)
        if row.get(name) is None:
            return f"missing {key}"
        value = scalar_text(row[name])
        if value is None:
            return f"non-string {key}"
        if not value.strip():
            return f"empty {key}"
        text[key] = value.strip()
    optional: dict[str, str | None] = {}
    for key in ("rationale", "difficulty"):
        raw = row.get(fields.get(key, key))
        value = None if raw is None else scalar_text(raw)
        if raw is not None and value is None:
            return f"non-string {key}"
        optional[key] = value.strip() if value and value.strip() else None
    return Problem(uid, text["question"], text["answer"], optional["difficulty"] or "", optional["rationale"])


RowParser = Callable[[Any, str, Mapping[str, str]], "Problem | str"]  # (row, id, fields) -> Problem or reason


def to_problems(
    rows: Iterator[tuple[str, Any]], fields: Mapping[str, str], skipped: Counter, parse: RowParser = to_problem
) -> list[Problem]:
    """Problems from (id, row) pairs read by `parse` (a format's reader; default the plain
    {question, answer} rows); malformed rows are counted into `skipped` by reason."""
    out = []
    for uid, row in rows:
        p = parse(row, uid, fields)
        if isinstance(p, str):
            skipped[p] += 1
        else:
            out.append(p)
    return out


def numbered(split: str, lines: Iterator[tuple[int, Any]]) -> Iterator[tuple[str, Any]]:
    """read_jsonl's (line, object) pairs as (`split-LINE` id, object)."""
    return ((f"{split}-{n}", row) for n, row in lines)


def held_out_problems(problems: list[Problem], fraction: float) -> tuple[list[Problem], list[Problem]]:
    """(train, test): a question is in test iff a hash of its text falls below `fraction`."""
    return held_out(problems, fraction, lambda p: p.question)


def check_nonempty(problems: list[Problem], what: str, skipped: Counter, fix: str) -> None:
    if not problems:
        detail = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())) or "no rows"
        raise ConfigError(f"{what} has no usable problems (skipped: {detail}); {fix}")
