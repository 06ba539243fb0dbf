"""A task, a scorer and a selector from a module outside the package (tests/example_plugin.py)
run a STaR iteration, configured only by name: no edit of starjax."""

import json
from pathlib import Path

import pytest
from conftest import SMALL_MODEL

from starjax.checkpoint import StateCheckpoints
from starjax.cli import main
from starjax.config import load_config
from starjax.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_plugins_from_outside_the_package_run_a_star_iteration(tmp_path):
    run = tmp_path / "run"
    args = [
        str(ROOT / "configs" / "tiny.yaml"),
        *SMALL_MODEL,
        "model.vocab_size=null",
        "plugins=[example_plugin]",
        f"run_dir={run}",
        "task.name=reverse",
        "task.reverse.words=24",
        "star.iterations=1",
        "star.rationalize=false",
        "star.num_samples=4",
        "star.temperature=1.0",
        "star.scorers=[shorter_is_better,answer]",
        "star.selectors=[correct,shortest_first,cap]",
        "star.first_steps=2",
        "train.batch_size=8",
        "train.seq_len=64",
        "sampler.batch_size=32",
        "sampler.max_new_tokens=12",
        "sampler.prompt_buckets=[32]",
        "sampler.progress=false",
    ]
    assert main(["star", *args]) == 0
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in history] == [0, 1]
    samples = [json.loads(line) for line in (run / "samples" / "iter_1.jsonl").read_text().splitlines()]
    assert {s["id"] for s in samples} and all(set(s["scores"]) == {"shorter_is_better", "answer"} for s in samples)
    # the first scorer's verdict (a completion cut at max_new_tokens is never correct)
    assert all(s["correct"] == (bool(s["completion"].strip()) and not s["truncated"]) for s in samples)
    checkpoints = StateCheckpoints(run / "state")
    kept = checkpoints.restore_latest()["kept"]
    checkpoints.close()
    assert kept and history[1]["kept"] == len(kept)
    for k in kept:  # the selector kept each question's shortest correct sample
        mine = [s["completion"] for s in samples if s["id"] == k["id"] and s["correct"]]
        assert len(k["completion"]) == min(len(c) for c in mine)


def test_a_plugin_tasks_settings_are_a_config_section_of_their_own():
    cfg = load_config(None, ["plugins=[example_plugin]", "task.name=reverse", "task.reverse.length=5"])
    assert cfg.task.reverse.length == 5 and cfg.task.addition.max_digits == 5
    with pytest.raises(ConfigError, match="task.reverse needs words >= 4"):
        load_config(None, ["plugins=[example_plugin]", "task.reverse.words=1"])
    with pytest.raises(ConfigError, match="unknown config key 'task.reverse.lenght'; did you mean task.reverse.length"):
        load_config(None, ["plugins=[example_plugin]", "task.reverse.lenght=5"])
    with pytest.raises(ConfigError, match="plugins: cannot import 'no_such_plugin'"):
        load_config(None, ["plugins=[no_such_plugin]"])
