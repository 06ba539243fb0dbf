"""The one progress log: `starjax: ...` lines on standard error, from process 0 only (every
process runs the same command; one voice is enough)."""

from __future__ import annotations

import sys

from starjax import multihost


def log(msg: str) -> None:
    if multihost.is_lead():
        print(f"starjax: {msg}", file=sys.stderr, flush=True)
