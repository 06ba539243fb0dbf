#!/usr/bin/env bash
# Prints the path of a working Python >= 3.12, or fails with one line.
# pyenv shims can exist for versions that are not active, so each candidate is run, not just found.
set -u
candidates=("${PYTHON:-}" python3.14 python3.13 python3.12 python3)
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin; do
  [ -x "$dir/python3" ] && candidates+=("$dir/python3")
done
for py in "${candidates[@]}"; do
  [ -n "$py" ] || continue
  if "$py" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
    command -v "$py"
    exit 0
  fi
done
echo "error: starjax needs Python 3.12 or newer; none found (install one, or set PYTHON=/path/to/python3.12)" >&2
exit 1
