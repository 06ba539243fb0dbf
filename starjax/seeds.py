"""Seeds derived by name: a phase's seed is a hash of its parent seed and its name, so no two
phases (or steps) share one and adding a phase changes no other phase's seed."""

from __future__ import annotations

import hashlib


def derive(seed: int, *names: object) -> int:
    """A seed in [0, 2**31) for `names` under `seed` (stable across processes and Python versions)."""
    key = "/".join(str(n) for n in (seed, *names)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") % 2**31
