"""Answer verifiers by name, or any `module:function(predicted, gold) -> bool`."""

from __future__ import annotations

import re
from fractions import Fraction

from starjax.errors import ConfigError
from starjax.registry import import_function
from starjax.tasks.base import Verifier


def _norm(s: str) -> str:
    return " ".join(s.strip().split()).lower()


def exact(predicted: str | None, gold: str) -> bool:
    """Equal up to case and runs of whitespace."""
    return predicted is not None and _norm(predicted) == _norm(gold)


# A number as written: optional sign (ASCII or Unicode minus), digits with thousands commas in
# their valid form or none, an optional decimal part, an optional /denominator.
_NUMBER = re.compile(r"[-\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
_NUMBERISH = re.compile(r"[-\u2212]?\d[\d,]*(?:\.\d+)?(?:/\d+)?")  # what a reader would take for one number


def canonical_number(s: str) -> Fraction | None:
    """The exact value of `s` (`1 4 5 8`, `1,458`, `-3/2`, `72.0`, `$72`), or of the last number in
    it; None when there is none or that number is malformed (`1,5`, `1,2345`, `3/0`)."""
    s = re.sub(r"(?<=\d) (?=\d)", "", s.strip())  # space-separated digits: `1 4 5 8`
    found = _NUMBERISH.findall(s)
    if not found or not _NUMBER.fullmatch(found[-1]):
        return None
    text = found[-1].replace(",", "").replace("\u2212", "-")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def numeric(predicted: str | None, gold: str) -> bool:
    """Exactly the same number (integers, decimals and fractions compared as fractions; digits may
    be space-separated; thousands commas only in groups of three)."""
    if predicted is None:
        return False
    p, g = canonical_number(predicted), canonical_number(gold)
    return p is not None and g is not None and p == g


def _letter(s: str, gold: str) -> str | None:
    """A parenthesised letter (the last one), else the last standalone capital among the choices
    (A to E, or up to the gold letter when it is later); a lone letter in either case."""
    s = s.strip()
    if re.fullmatch(r"\(?[A-Za-z][).:]?", s):
        return re.sub(r"[^A-Za-z]", "", s).upper()
    parens = re.findall(r"\(([A-Za-z])\)", s)
    if parens:
        return parens[-1].upper()
    top = max("E", gold.strip().upper()[:1] or "E")
    standalone = [c for c in re.findall(r"\b([A-Z])\b", s) if "A" <= c <= top]
    return standalone[-1] if standalone else None


def choice(predicted: str | None, gold: str) -> bool:
    """The same multiple-choice letter: "(B)", "B.", "b", "B) cats", "a dog (B)" and "I'd say B"
    all read as B."""
    if predicted is None:
        return False
    p, g = _letter(predicted, gold), _letter(gold, gold)
    return p is not None and p == g


_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")


def _math_text(s: str) -> str:
    """A math answer as plain text: the last \\boxed{...} if any, $ and \\left/\\right dropped,
    \\frac{a}{b} as a/b, spaces removed."""
    boxed = _BOXED.findall(s)
    s = boxed[-1] if boxed else s
    s = s.replace("$", "").replace("\\left", "").replace("\\right", "").replace("\\!", "")
    s = _FRAC.sub(r"(\1)/(\2)", s)
    s = re.sub(r"\((-?\d+)\)/\((\d+)\)", r"\1/\2", s)
    return re.sub(r"\s+", "", s).rstrip(".")


def math(predicted: str | None, gold: str) -> bool:
    """The same math answer: numbers (and \\frac{a}{b}, \\boxed{...}) compared exactly as values,
    anything else as text without spaces, dollar signs or \\left/\\right."""
    if predicted is None:
        return False
    p, g = _math_text(predicted), _math_text(gold)
    pn, gn = canonical_number(p) if _NUMBER.fullmatch(p.replace("\u2212", "-")) else None, None
    if _NUMBER.fullmatch(g.replace("\u2212", "-")):
        gn = canonical_number(g)
    if pn is not None and gn is not None:
        return pn == gn
    return p.lower() == g.lower()


VERIFIERS: dict[str, Verifier] = {"exact": exact, "numeric": numeric, "choice": choice, "math": math}


def get_verifier(spec: str) -> Verifier:
    """A verifier by name (exact, numeric, choice) or `package.module:function`."""
    if spec in VERIFIERS:
        return VERIFIERS[spec]
    if ":" not in spec:
        raise ConfigError(f"unknown verifier {spec!r}; use one of {sorted(VERIFIERS)} or module:function")
    return import_function(spec, "verifier")
