"""gs:// run directories and checkpoints (starjax/storage.py), against a local directory registered
as fsspec's `gs` filesystem: the code that reaches a bucket is the code under test, gcsfs aside."""

import importlib
import shutil
from pathlib import Path

import fsspec
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import SMALL_MODEL, make_rules
from flax import nnx
from fsspec.implementations.local import LocalFileSystem, make_path_posix
from test_star import ROOT, comparable, star_args, write_task

from starjax import storage
from starjax.checkpoint import save_params
from starjax.cli import main
from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.model.transformer import create_model
from starjax.sources import load_model

TINY = str(ROOT / "configs" / "tiny.yaml")


class LocalBucket(LocalFileSystem):
    """gs://BUCKET/KEY as ROOT/BUCKET/KEY on the local disk."""

    protocol = ("gs",)
    root_dir = ""

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        if path.startswith("gs://"):
            path = f"{cls.root_dir}/{path[5:]}"
        return make_path_posix(path).rstrip("/") or cls.root_marker


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """The local directory behind gs://; starjax's copies go to tmp_path/cache."""
    root = tmp_path / "gcs"
    root.mkdir()
    monkeypatch.setattr(LocalBucket, "root_dir", str(root))
    monkeypatch.setenv("STARJAX_CACHE", str(tmp_path / "cache"))
    fsspec.register_implementation("gs", LocalBucket, clobber=True)
    storage._filesystem.cache_clear()
    yield root
    importlib.import_module("fsspec.registry")._registry.pop("gs", None)
    storage._filesystem.cache_clear()


def files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_push_and_pull_mirror_a_directory_both_ways(bucket, tmp_path):
    here = tmp_path / "here"
    (here / "a").mkdir(parents=True)
    (here / "a" / "x.txt").write_text("one")
    (here / "y.bin").write_bytes(b"\0" * 10)
    (here / "3.orbax-checkpoint-tmp-17").mkdir()  # a checkpoint Orbax is still writing
    (here / "3.orbax-checkpoint-tmp-17" / "data").write_text("half")
    mirror = storage.Mirror("gs://b/run", here)
    assert mirror.push() == 2
    assert files(bucket / "b" / "run") == {"a/x.txt": b"one", "y.bin": b"\0" * 10}
    assert mirror.push() == 0  # nothing changed: nothing sent
    (here / "a" / "x.txt").write_text("two")  # same size, new content
    (here / "y.bin").unlink()  # the run deleted it (an old checkpoint)
    assert mirror.push() == 1
    assert files(bucket / "b" / "run") == {"a/x.txt": b"two"}

    # another machine's copy, and a stale copy of this machine's (same sizes, older content)
    other = storage.Mirror("gs://b/run")
    assert other.pull() == 1 and files(other.local) == {"a/x.txt": b"two"}
    (bucket / "b" / "run" / "a" / "x.txt").write_text("333")
    (bucket / "b" / "run" / "new.txt").write_text("n")
    stale = tmp_path / "stale"
    (stale / "a").mkdir(parents=True)
    (stale / "a" / "x.txt").write_text("333")  # same size and bytes: kept, but recorded
    (stale / "gone.txt").write_text("deleted from the bucket since")
    assert storage.Mirror("gs://b/run", stale).pull() == 2  # x.txt (unrecorded) and new.txt
    assert files(stale) == {"a/x.txt": b"333", "new.txt": b"n"}


def test_remote_inputs_are_fetched_once_and_paths_stay_strings(bucket):
    (bucket / "b" / "tok").mkdir(parents=True)
    (bucket / "b" / "tok" / "tokenizer.model").write_bytes(b"sp")
    local = storage.local("gs://b/tok/tokenizer.model")
    assert local.read_bytes() == b"sp" and local.is_relative_to(storage.cache_root())
    assert storage.local("~/x") == Path("~/x").expanduser()
    assert storage.parent("gs://b/run/base") == "gs://b/run"
    assert not storage.local("gs://b/missing").exists()


def saved_arrays(path: Path) -> list[np.ndarray]:
    with ocp.StandardCheckpointer() as ckptr:
        return [np.asarray(a) for a in jax.tree.leaves(ckptr.restore(path))]


def test_a_star_run_in_a_bucket_resumes_on_a_fresh_machine_equal_to_a_local_run(bucket, tmp_path):
    d = write_task(tmp_path)
    fast = ("pretrain.steps=30", "train.checkpoint_every=3")
    local_run = tmp_path / "local"
    assert main(["star", *star_args(d, local_run, *fast)]) == 0

    url = "gs://b/runs/star"
    (bucket / "b" / "data").mkdir(parents=True)
    for split in ("train", "test"):  # the task's files in the bucket too
        shutil.copy(d / f"{split}.jsonl", bucket / "b" / "data")
        fast += (f"task.jsonl.{split}=gs://b/data/{split}.jsonl",)
    assert main(["star", *star_args(d, url, *fast, "star.iterations=1")]) == 0
    remote = bucket / "b" / "runs" / "star"
    names = files(remote)
    for expected in ("config.yaml", "metrics.jsonl", "tokenizer.model", "accuracy.png", "samples/iter_1.jsonl"):
        assert expected in names
    for folder in ("params/iter_1/", "base/", "tb/", "state/"):
        assert any(n.startswith(folder) for n in names), folder
    # what the run deleted is gone from the bucket too, and nothing half-written was sent
    assert not any(n.startswith(("train/", "pretrain/")) or ".partial" in n or "tmp" in n for n in names)

    # a fresh machine, no local copy: the second iteration resumes from what the bucket holds
    shutil.rmtree(storage.cache_root())
    assert main(["star", *star_args(d, url, *fast)]) == 0
    assert comparable(url) == comparable(local_run)
    assert files(remote)["samples/iter_2.jsonl"] == (local_run / "samples" / "iter_2.jsonl").read_bytes()
    for a, b in zip(saved_arrays(storage.local(f"{url}/params/iter_2")), saved_arrays(local_run / "params" / "iter_2")):
        np.testing.assert_array_equal(a, b)


def test_export_and_import_hf_through_a_bucket(bucket, tmp_path, capsys):
    cfg = load_config(TINY, SMALL_MODEL)
    rules = make_rules()
    model = create_model(cfg.model, rules, seed=3)
    storage.Mirror("gs://b/ckpt", save_params(tmp_path / "ckpt", model)).push()
    args = [TINY, "gs://b/hf", *SMALL_MODEL, "--checkpoint", "gs://b/ckpt", "--dtype", "float32"]
    assert main(["export-hf", *args]) == 0
    assert {"config.json", "model.safetensors"} <= set(files(bucket / "b" / "hf"))
    assert main(["export-hf", *args]) == 2  # never overwrites
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["import-hf", "gs://b/hf", "gs://b/imported"]) == 0
    assert "params" in {n.split("/")[0] for n in files(bucket / "b" / "imported")}
    imported = load_config(None, ["model.from_hf=gs://b/imported"])
    back = load_model(None, imported.model, rules, 0)
    for a, b in zip(jax.tree.leaves(nnx.state(back)), jax.tree.leaves(nnx.state(model))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_missing_filesystem_package_and_several_processes_are_one_line_errors(bucket, tmp_path, capsys, monkeypatch):
    assert main(["star", TINY, "run_dir=s3://b/run"]) == 2
    assert "s3:// paths need the s3fs package: pip install s3fs" in capsys.readouterr().err
    assert main(["export-hf", TINY, str(tmp_path / "out"), *SMALL_MODEL, "--checkpoint", "gs://b/none"]) == 2
    assert "checkpoint 'gs://b/none' not found" in capsys.readouterr().err
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ConfigError, match="run_dir=gs://b/run with 2 processes"):
        storage.require_one_process("gs://b/run", "run_dir")
    storage.require_one_process(str(tmp_path), "run_dir")  # local paths are every host's own business
