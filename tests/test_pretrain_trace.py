"""scripts/pretrain_trace.py: a base's held-out accuracy while it pre-trains, for its weights and
moving averages of them; its bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import SMALL_DEMO

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pretrain_trace.py"


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), str(ROOT / "configs" / "demo.yaml"), *SMALL_DEMO, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "HOME": str(home)})


def test_traces_the_weights_and_their_average_every_few_steps_and_at_the_last(tmp_path):
    out = tmp_path / "trace.jsonl"
    p = _run(tmp_path, "pretrain.steps=12", "--every", "5", "--start", "5", "--ema", "0.5", "--out", str(out))
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 12]
    assert all(set(r) == {"step", "loss", "weights", "ema 0.5"} for r in rows)
    # the average begins at --start, so there it is the weights themselves
    assert rows[0]["ema 0.5"] == rows[0]["weights"]
    for r in rows:
        for acc in (r["weights"], r["ema 0.5"]):
            assert set(acc) == {"all", "1", "2", "3"} and all(0 <= v <= 1 for v in acc.values())
    table = p.stdout[p.stdout.index("| step |") :].splitlines()  # after TFDS's messages on preparing the data
    assert table[0] == "| step | weights | all | 1 | 2 | 3 |" and len(table) == 2 + 2 * len(rows)
    assert table[-1].startswith(f"| 12 | ema 0.5 | {rows[2]['ema 0.5']['all']:.3f} |")


def test_bad_arguments_and_a_config_without_pre_training_are_one_line_errors(tmp_path):
    for args, message in (
        (["--ema", "1.5"], "every --ema decay in (0, 1)"),
        (["--every", "0"], "--every must be >= 1"),
        (["pretrain.steps=0"], "the config must pre-train"),
        (["--start", "41"], "--start 41 is past the last pre-training step (40)"),
    ):
        p = _run(tmp_path, *args)
        assert p.returncode == 2 and p.stderr.startswith("error: ") and message in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
