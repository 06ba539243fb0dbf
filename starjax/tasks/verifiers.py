"""Answer verifiers by name, or any `module:function(predicted, gold) -> bool`."""

from __future__ import annotations

import importlib
import re

from starjax.config import ConfigError
from starjax.tasks.base import Verifier


def _norm(s: str) -> str:
    return " ".join(s.strip().split()).lower()


def exact(predicted: str | None, gold: str) -> bool:
    """Equal up to case and runs of whitespace."""
    return predicted is not None and _norm(predicted) == _norm(gold)


def _number(s: str) -> float | None:
    s = s.replace(",", "").replace(" ", "").strip().rstrip(".")
    try:
        return float(s)
    except ValueError:
        found = re.findall(r"-?\d+(?:\.\d+)?", s)
        return float(found[-1]) if found else None


def numeric(predicted: str | None, gold: str) -> bool:
    """The same number (digits may be space-separated, thousands separators allowed)."""
    if predicted is None:
        return False
    p, g = _number(predicted), _number(gold)
    return p is not None and g is not None and abs(p - g) <= 1e-9 * max(1.0, abs(g))


def _letter(s: str) -> str | None:
    m = re.search(r"\(?\b([A-Za-z])\b\)?", s.strip())
    return m.group(1).upper() if m else None


def choice(predicted: str | None, gold: str) -> bool:
    """The same multiple-choice letter: "(B)", "B.", "b" and "B) cats" all read as B."""
    return predicted is not None and _letter(predicted) is not None and _letter(predicted) == _letter(gold)


VERIFIERS: dict[str, Verifier] = {"exact": exact, "numeric": numeric, "choice": choice}


def get_verifier(spec: str) -> Verifier:
    """A verifier by name (exact, numeric, choice) or `package.module:function`."""
    if spec in VERIFIERS:
        return VERIFIERS[spec]
    if ":" not in spec:
        raise ConfigError(f"unknown verifier {spec!r}; use one of {sorted(VERIFIERS)} or module:function")
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import verifier {spec!r}: {e}") from None
    if not callable(fn):
        raise ConfigError(f"verifier {spec!r} is not callable")
    return fn
