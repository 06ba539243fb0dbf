"""scripts/copied_operands.py: which samples restate the question on the scratchpad's first line,
and which reach the answer without doing so; its bad input."""

import json
import subprocess
import sys
from pathlib import Path

from starjax.tasks.addition import scratchpad

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "copied_operands.py"


def _sample(completion: str, hinted: bool, correct: bool) -> dict:
    return {"question": "5 6 + 7 8", "difficulty": "2", "hinted": hinted, "completion": completion, "correct": correct}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_counts_copied_operands_and_right_answers_through_miscopied_ones(tmp_path):
    good = scratchpad(56, 78) + "\n1 3 4"
    miscopied = good.replace("5 6 + 7 8 , C: 0", "5 5 + 7 9 , C: 0", 1)
    assert miscopied != good
    (tmp_path / "samples").mkdir()
    rows = [
        _sample(good, False, True),
        _sample(miscopied, False, False),
        _sample(miscopied, True, True),
        _sample("", True, False),
    ]
    (tmp_path / "samples" / "iter_1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = _run(str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "| 1 | bare | 2 | 2 | 50% | 1 | 0 |" in p.stdout
    assert "| 1 | hinted | 2 | 2 | 0% | 1 | 1 |" in p.stdout


def test_a_directory_without_samples_or_a_missing_iteration_is_a_one_line_error(tmp_path):
    p = _run(str(tmp_path))
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "samples/iter_N.jsonl" in p.stderr
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "iter_1.jsonl").write_text(json.dumps(_sample("", False, False)) + "\n")
    p = _run(str(tmp_path), "--iterations", "2")
    assert p.returncode == 2 and p.stderr.strip() == f"error: {tmp_path} has no samples for iteration 2 (it has 1-1)"
