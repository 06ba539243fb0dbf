"""Create the peer benchmarks' virtual environments (benchmarks/.envs/<name>).

Each peer gets its own Python 3.11 venv so its pins (tunix wants jax < 0.11.1,
transformers wants torch) never touch starjax's own environment.

    python benchmarks/peer_envs.py tunix transformers

Importable too: `ensure_env("tunix")` returns the venv's python. Idempotent:
a stamp file holds the requirement list; pip only runs when it changed.
"""

from __future__ import annotations

import glob
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent / ".envs"

# Verified together on Python 3.11, CPU. Install groups run in order: torch
# goes first and alone, pinned, so pip can never pull a CUDA build for
# transformers' sake.
REQUIREMENTS: dict[str, list[list[str]]] = {
    "tunix": [
        [
            "google-tunix==0.1.7",
            "jax==0.10.2",
            "jaxlib==0.10.2",
            "flax==0.12.8",
        ]
    ],
    "transformers": [
        ["torch==2.13.0"],
        ["transformers==5.24.0", "numpy==2.4.6"],
    ],
}
STAMP = "starjax-requirements.txt"


def _log(msg: str) -> None:
    print(f"[peer_envs] {msg}", file=sys.stderr, flush=True)


def _real_311(exe: str) -> str | None:
    """The real interpreter behind `exe` if it runs as Python 3.11 with venv.

    pyenv shims can sit on PATH yet fail for an unselected version, and a venv
    built from a shim would point at the shim; so ask for sys.executable.
    """
    code = "import sys, venv; print(sys.version_info[:2] == (3, 11), sys.executable)"
    try:
        out = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    ok, _, real = out.stdout.strip().partition(" ")
    return real if out.returncode == 0 and ok == "True" and real else None


def find_python311() -> str:
    candidates = [shutil.which("python3.11"), "/usr/bin/python3.11"]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11*/bin/python3.11")), reverse=True)
    for exe in filter(None, candidates):
        real = _real_311(exe)
        if real:
            return real
    raise RuntimeError("no working Python 3.11 found (PATH, /usr/bin, ~/.pyenv)")


def _stamp_text(name: str) -> str:
    return "\n".join(" ".join(group) for group in REQUIREMENTS[name]) + "\n"


def ensure_env(name: str) -> pathlib.Path:
    """Create or update benchmarks/.envs/<name>; return its python path."""
    if name not in REQUIREMENTS:
        raise ValueError(f"unknown peer env {name!r}; one of {sorted(REQUIREMENTS)}")
    env = ROOT / name
    python = env / "bin" / "python"
    stamp = env / STAMP
    want = _stamp_text(name)
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        _log(f"{name}: up to date ({env})")
        return python
    if not python.exists():
        base = find_python311()
        _log(f"{name}: creating venv with {base}")
        subprocess.run([base, "-m", "venv", "--clear", str(env)], check=True)
    stamp.unlink(missing_ok=True)  # a half-finished install must not look done
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"]
    for group in REQUIREMENTS[name]:
        _log(f"{name}: pip install {' '.join(group)}")
        res = subprocess.run(pip + group, capture_output=True, text=True)
        if res.returncode != 0:
            tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"pip install failed for {name}: {tail}")
    stamp.write_text(want)
    _log(f"{name}: ready ({python})")
    return python


def main(argv: list[str]) -> int:
    names = argv or sorted(REQUIREMENTS)
    try:
        for name in names:
            print(ensure_env(name))
    except (RuntimeError, ValueError, subprocess.CalledProcessError) as e:
        print(f"peer_envs: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
