"""Same config and seed, same result: a small STaR run on the addition task (its TFDS data,
tokenizer, pre-trained base and two iterations) twice, in fresh cache and run directories, with
other hash seeds and host-memory settings, and once more on one CPU device instead of the demo's
two, must give identical metrics, samples and parameters."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import SMALL_DEMO, make_rules
from flax import nnx

from starjax.checkpoint import restore_params
from starjax.config import load_config
from starjax.star.reference import comparable
from starjax.star.report import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def star_run(tmp: Path, name: str, env: dict[str, str], overrides: list[str]) -> Path:
    """`starjax star` on the demo config, shrunk, in a process of its own with a fresh HOME (so a
    fresh ~/.cache: the TFDS data is generated anew), the given environment and overrides."""
    home, run_dir = tmp / name / "home", tmp / name / "run"
    home.mkdir(parents=True)
    full_env = {**os.environ, "HOME": str(home), **env}
    cmd = [
        sys.executable,
        "-m",
        "starjax.cli",
        "star",
        str(ROOT / "configs" / "demo.yaml"),
        *SMALL_DEMO,
        *overrides,
        f"run_dir={run_dir}",
    ]
    p = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (home / ".cache" / "starjax" / "tfds").is_dir(), "the task data was not generated under the fresh HOME"
    return run_dir


def metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl without wall-clock times and compile counts."""
    return [comparable(r) for r in read_metrics(run_dir)]


def params_digest(directory: Path, run_dir: Path) -> str:
    cfg = load_config(run_dir / "config.yaml", [f"model.vocab_size={_vocab(run_dir)}"])
    model = restore_params(directory, cfg.model, make_rules())
    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree.leaves_with_path(nnx.state(model)), key=lambda kv: jax.tree_util.keystr(kv[0])):
        h.update(jax.tree_util.keystr(path).encode() + np.asarray(leaf).tobytes())
    return h.hexdigest()


def _vocab(run_dir: Path) -> int:
    from starjax.sentencepiece_tokenizer import SentencePieceTokenizer as Tokenizer

    return Tokenizer.load(run_dir / "tokenizer.model").vocab_size


@pytest.mark.slow
def test_a_star_run_is_a_function_of_its_config_and_code(tmp_path):
    a = star_run(tmp_path, "a", {"PYTHONHASHSEED": "1"}, ["runtime.host_malloc=system"])
    b = star_run(tmp_path, "b", {"PYTHONHASHSEED": "2"}, ["runtime.host_malloc=reuse"])
    # The demo trains on one of two CPU devices and samples with a model copy on each
    # (sampler.replicas); on a single device, which does both, the run must be the same.
    c = star_run(tmp_path, "c", {}, ["runtime.num_cpu_devices=1", "mesh.data=-1", "sampler.replicas=1"])
    for other in (b, c):
        assert (a / "tokenizer.model").read_bytes() == (other / "tokenizer.model").read_bytes()
        assert len(metrics(a)) == 3 and metrics(a) == metrics(other)
        for n in (1, 2):
            assert (a / "samples" / f"iter_{n}.jsonl").read_text() == (other / "samples" / f"iter_{n}.jsonl").read_text()
        for stage in ("base", "params/iter_1", "params/iter_2"):
            assert params_digest(a / stage, a) == params_digest(other / stage, other), f"{stage} differs"
