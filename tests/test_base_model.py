"""Pre-training that stops at a skill (pretrain.stop_difficulty): where it checks, what it logs,
when it stops, and its bad input."""

from pathlib import Path

import jax
import orbax.checkpoint as ocp
import pytest
from conftest import SMALL_DEMO

from starjax import runtime
from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.star import base_model as base_model_module
from starjax.star.plugins.rollouts import Continuations
from starjax.star.protocols import Context
from starjax.star.setup import prepare

ROOT = Path(__file__).resolve().parents[1]

# The demo trains on one of two CPU devices and samples on both; this process has the tests' eight.
ONE_PROCESS_DEVICES = ["runtime.num_cpu_devices=0", "mesh.data=-1", "sampler.replicas=1"]


def _base(tmp_path: Path, monkeypatch, accuracies: list[float], *overrides: str) -> tuple[list[str], list[list]]:
    """Builds the base with evaluate() answering `accuracies` in turn; the log and the questions
    each check was asked about."""
    cfg = load_config(
        str(ROOT / "configs" / "demo.yaml"),
        [
            *SMALL_DEMO,
            *ONE_PROCESS_DEVICES,
            f"run_dir={tmp_path / 'run'}",
            f"task.data_dir={tmp_path / 'tfds'}",
            "pretrain.steps=12",
            *overrides,
        ],
    )
    asked: list[list] = []

    def evaluate(task, rollout, sampler, problems, star_cfg, seed):
        asked.append(problems)
        return {"test_accuracy": accuracies[len(asked) - 1]}

    monkeypatch.setattr(base_model_module, "evaluate", evaluate)
    setup = prepare(cfg, allow_config_change=False)
    rules = runtime.start(cfg)
    logs: list[str] = []
    setup.load(logs.append)
    rollout = Continuations(Context(setup.cfg, setup.task))
    base_model_module.base_model(setup.cfg, rules, setup.task, rollout, setup.splits, setup.tokenizer, setup.run_dir, logs.append)
    return logs, asked


def test_pre_training_stops_at_the_first_check_that_reaches_the_bar(tmp_path, monkeypatch):
    stop = ["pretrain.stop_difficulty=2", "pretrain.stop_every=4", "pretrain.stop_accuracy=0.5", "pretrain.stop_questions=5"]
    logs, asked = _base(tmp_path, monkeypatch, [0.0, 0.5], *stop, "pretrain.stop_before=false")
    assert [line for line in logs if line.startswith("pre-train step")] == [
        "pre-train step 4: 0.000 on 5 training questions of difficulty 2",
        "pre-train step 8: 0.500 on 5 training questions of difficulty 2 >= 0.5: stopping here",
    ]
    assert all(len(qs) == 5 and {q.difficulty for q in qs} == {"2"} for qs in asked)
    assert (tmp_path / "run" / "base").is_dir() and not (tmp_path / "run" / "pretrain").exists()


def test_a_bar_never_reached_pre_trains_every_step_without_checking_the_last(tmp_path, monkeypatch):
    logs, asked = _base(
        tmp_path, monkeypatch, [0.1, 0.2], "pretrain.stop_difficulty=3", "pretrain.stop_every=5", "pretrain.stop_accuracy=0.5"
    )
    assert [line.split(":")[0] for line in logs if line.startswith("pre-train step")] == ["pre-train step 5", "pre-train step 10"]
    assert len(asked) == 2 and (tmp_path / "run" / "base").is_dir()


def test_a_difficulty_no_training_question_has_and_a_bad_bar_are_config_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"stop_difficulty='7': no training question has it \(they have \['1', '2', '3'\]\)"):
        _base(tmp_path, monkeypatch, [], "pretrain.stop_difficulty=7")
    for bad in ("pretrain.stop_accuracy=0", "pretrain.stop_accuracy=1.5", "pretrain.stop_every=0", "pretrain.stop_questions=0"):
        with pytest.raises(ConfigError, match="pretrain.stop_accuracy must be in"):
            load_config(str(ROOT / "configs" / "demo.yaml"), ["pretrain.stop_difficulty=4", bad])
    with pytest.raises(ConfigError, match="pretrain.stop_before=true needs pretrain.stop_difficulty"):
        load_config(str(ROOT / "configs" / "demo.yaml"), ["pretrain.stop_before=true", "pretrain.stop_difficulty=null"])


def _weights(run: Path) -> list:
    """The saved base's arrays as nested lists, to compare bit for bit."""
    with ocp.StandardCheckpointer() as ckptr:
        return jax.tree.leaves(jax.tree.map(lambda a: a.tolist(), ckptr.restore((run / "base").absolute())))


BELOW = [
    "pretrain.stop_difficulty=2",
    "pretrain.stop_every=3",
    "pretrain.stop_accuracy=0.5",
    "pretrain.stop_questions=5",
    "pretrain.stop_before=true",
]


def test_stop_before_keeps_the_last_check_below_the_bar(tmp_path, monkeypatch):
    logs, _ = _base(tmp_path / "a", monkeypatch, [0.0, 0.2, 0.5], *BELOW)
    assert [line for line in logs if line.startswith("pre-train step")] == [
        "pre-train step 3: 0.000 on 5 training questions of difficulty 2",
        "pre-train step 6: 0.200 on 5 training questions of difficulty 2",
        "pre-train step 9: 0.500 on 5 training questions of difficulty 2 >= 0.5: stopping; "
        "the base is step 6's, the last check below it",
    ]
    # The same pre-training stopped at step 6 without stop_before: the same weights.
    _base(tmp_path / "b", monkeypatch, [0.0, 0.5], *BELOW[:4], "pretrain.stop_before=false")
    assert _weights(tmp_path / "a" / "run") == _weights(tmp_path / "b" / "run")
    assert not (tmp_path / "a" / "run" / "pretrain_below").exists()


def test_stop_before_resumed_after_a_crash_keeps_the_same_weights(tmp_path, monkeypatch):
    # A checkpoint at step 6, then the process dies in the check at step 9 (evaluate() has no
    # answer for it); the rerun resumes at 6 and reaches the bar at 9: the base is step 6's,
    # whose check only the first process made.
    every6 = ["train.checkpoint_every=6"]
    with pytest.raises(IndexError):
        _base(tmp_path / "a", monkeypatch, [0.0, 0.2], *BELOW, *every6)
    logs, asked = _base(tmp_path / "a", monkeypatch, [0.5], *BELOW, *every6)
    assert len(asked) == 1 and "the base is step 6's" in logs[-1]
    _base(tmp_path / "b", monkeypatch, [0.0, 0.5], *BELOW[:4], "pretrain.stop_before=false")
    assert _weights(tmp_path / "a" / "run") == _weights(tmp_path / "b" / "run")


def test_stop_before_with_the_bar_reached_at_the_first_check_is_a_config_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"the first check \(step 3\) already reaches .* lower pretrain.stop_every"):
        _base(tmp_path, monkeypatch, [0.9], *BELOW)
