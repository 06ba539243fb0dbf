"""benchmarks/device.py runs on whatever JAX sees: here a CPU, at its reduced size."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_device_benchmark_runs_reduced_on_a_cpu_and_says_so():
    cmd = [sys.executable, str(ROOT / "benchmarks/device.py"), "--json", "--no-write", "--steps", "1", "--repeats", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=600)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout.strip().splitlines()[-1])
    assert [r["what"] for r in rows] == ["train step", "decode step"]
    assert all(r["size"] == "reduced (CPU size)" and 0 < r["figure"] and r["seconds"] > 0 for r in rows)
    assert [r["unit"] for r in rows] == ["% MFU", "% of memory bandwidth"]
