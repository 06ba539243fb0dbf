"""`starjax sft` end to end: logs, held-out loss, bad records, SIGKILL resume, damaged checkpoints, NaN."""

import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import SMALL_MODEL, make_rules

from starjax.checkpoint import TrainCheckpoints, restore_params
from starjax.cli import main
from starjax.config import load_config
from starjax.model.transformer import create_model
from starjax.training.step import init_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from test_tokenizer import scratchpad_texts

    from starjax.sentencepiece_tokenizer import train_tokenizer

    d = tmp_path_factory.mktemp("sft")
    tok = train_tokenizer(scratchpad_texts(), d / "tok", vocab_size=320).source
    rng = random.Random(0)
    lines = []
    for _ in range(200):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        lines.append(json.dumps({"q": f"{' '.join(str(a))} + {' '.join(str(b))} =", "a": " " + " ".join(str(a + b))}))
    lines += [
        "not json",
        json.dumps({"q": "1 + 1 ="}),
        json.dumps({"q": "1 + 1 =", "a": "  "}),
        json.dumps({"q": "1 " * 100, "a": "2"}),
    ]
    (d / "data.jsonl").write_text("\n".join(lines) + "\n")
    return d, tok


def args(files, run_dir, *extra):
    d, tok = files
    return [
        str(ROOT / "configs" / "tiny.yaml"),
        f"tokenizer.path={tok}",
        "model.vocab_size=null",
        *SMALL_MODEL[1:],
        f"data.train={d / 'data.jsonl'}",
        "data.prompt_field=q",
        "data.completion_field=a",
        f"run_dir={run_dir}",
        "train.batch_size=8",
        "train.seq_len=48",
        "train.steps=12",
        "train.checkpoint_every=4",
        "train.learning_rate=1e-3",
        "train.eval_every=6",
        "mesh.data=2",
        "mesh.fsdp=2",
        "mesh.tensor=2",
        *extra,
    ]


def metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_sft_end_to_end(files, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["sft", *args(files, run)]) == 0
    err = capsys.readouterr().err
    assert "skipped: 1 missing field, 1 empty completion, 1 too long, 1 unparsable line" in err
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert {"loss", "accuracy", "grad_norm", "learning_rate", "tokens", "tokens_per_s"} <= set(rows[0])
    assert [r["step"] for r in rows if "eval_loss" in r] == [6, 12]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["12", "4", "8"]
    assert load_config(run / "config.yaml").train.steps == 12
    cfg = load_config(run / "config.yaml")
    restore_params(run / "params", cfg.model, make_rules())  # the final params load for sampling
    # rerunning a finished run resumes at the end and changes nothing
    assert main(["sft", *args(files, run)]) == 0
    assert len(metrics(run)) == 12


def sft_process(files, run_dir):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "starjax.cli",
            "sft",
            *args(files, run_dir, "runtime.num_cpu_devices=8", "train.checkpoint_every=2", "train.steps=16"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def final_params(run_dir):
    cfg = load_config(Path(run_dir) / "config.yaml")
    model = restore_params(Path(run_dir) / "params", cfg.model, make_rules())
    from flax import nnx

    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]


@pytest.mark.slow
def test_sigkill_and_rerun_equals_uninterrupted(files, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    p = sft_process(files, whole)
    assert p.wait(timeout=300) == 0, p.stderr.read()
    p = sft_process(files, killed)
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "6").exists():  # kill mid-run, after some checkpoints
        assert p.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (killed / "params").exists()
    p = sft_process(files, killed)
    assert p.wait(timeout=300) == 0, p.stderr.read()
    assert "resuming from the checkpoint at step" in p.stderr.read()
    for a, b in zip(final_params(whole), final_params(killed)):
        np.testing.assert_array_equal(a, b)
    assert [r["step"] for r in metrics(killed)] == list(range(1, 17))
    np.testing.assert_allclose([r["loss"] for r in metrics(killed)], [r["loss"] for r in metrics(whole)], rtol=1e-6)


def small_state(shape, seed=0):
    cfg = load_config(None, SMALL_MODEL)
    model = create_model(cfg.model, make_rules(shape), seed=seed)
    return init_state(model, cfg.train, seed)


def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path):
    ckpts = TrainCheckpoints(tmp_path / "ck", keep=3)
    states = {step: small_state((1, 1, 1), seed=step) for step in (1, 2)}
    for step, state in states.items():
        ckpts.save(step, state, {"step": step})
    ckpts.wait()
    files = sorted(
        (p for p in (tmp_path / "ck" / "2").rglob("*") if p.is_file() and p.stat().st_size > 1000),
        key=lambda p: -p.stat().st_size,
    )
    with open(files[0], "r+b") as f:
        f.truncate(files[0].stat().st_size // 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step, state, meta = TrainCheckpoints(tmp_path / "ck").restore_latest(small_state((1, 1, 1), seed=9))
    assert step == 1 and meta == {"step": 1}
    assert any("checkpoint step 2" in str(w.message) and "unreadable" in str(w.message) for w in caught)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(states[1].params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_train_state_restores_onto_another_mesh(tmp_path):
    saved = small_state((2, 2, 2), seed=3)
    ckpts = TrainCheckpoints(tmp_path / "ck")
    ckpts.save(5, saved, {"step": 5})
    ckpts.wait()
    target = small_state((8, 1, 1), seed=0)
    step, state, _ = TrainCheckpoints(tmp_path / "ck").restore_latest(target)
    assert step == 5
    for a, b, t in zip(jax.tree.leaves(state), jax.tree.leaves(saved), jax.tree.leaves(target)):
        assert a.sharding == t.sharding
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(files, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "sft",
                *args(
                    files,
                    run,
                    "train.learning_rate=1e30",
                    "train.grad_clip=1e30",
                    "train.warmup_steps=0",
                    "train.checkpoint_every=1",
                ),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("starjax: error: sft loss is ") and "last good checkpoint" in err
    bad_step = int(err.split("at step ")[1].split(";")[0])
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and max(steps) == bad_step - 1


def test_tfds_dataset_as_training_data(files, tmp_path, capsys):
    import tensorflow_datasets as tfds

    class ToySum(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            text = tfds.features.Text()
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"q": text, "a": text}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(120):
                yield i, {"q": f"{i % 10} + {i % 7} =", "a": f" {i % 10 + i % 7}"}

    ToySum(data_dir=str(tmp_path / "tfds"), file_format="array_record").download_and_prepare()
    run = tmp_path / "run"
    extra = ["data.train=tfds:toy_sum/train", f"data.tfds_data_dir={tmp_path / 'tfds'}", "train.steps=3"]
    assert main(["sft", *args(files, run, *extra)]) == 0
    assert "skipped: 0 missing field" in capsys.readouterr().err
    assert len(metrics(run)) == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["data.train=null"], "needs data: set data.train"),
        (["data.train=/nope.jsonl"], "data.train: file '/nope.jsonl' not found"),
        (["data.train=tfds:no_such_dataset"], "TFDS dataset 'no_such_dataset' not found"),
        (["train.batch_size=4096"], "fewer than train.batch_size=4096"),
        (["train.init_from=/nope"], "checkpoint '/nope' not found"),
    ],
)
def test_sft_usage_errors(files, tmp_path, capsys, extra, message):
    assert main(["sft", *args(files, tmp_path / "run", *extra)]) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
