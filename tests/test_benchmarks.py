"""benchmarks/device.py runs on whatever JAX sees (here a CPU, at its reduced size); benchmarks/demo_step.py runs with the shipped demo config, and its floor and bad input."""

import importlib.util
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


def _demo_step():
    spec = importlib.util.spec_from_file_location("demo_step", ROOT / "benchmarks" / "demo_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_step_floor_follows_the_demo_schedule(tmp_path):
    """benchmarks/demo_step.py's floor: configs/demo.yaml's 1,200 pre-training steps and 1,286
    fine-tune steps, plus (with a run) every generated token of its samples."""
    import sentencepiece as spm

    demo_step = _demo_step()
    # 1,200 x 20 GFLOP + 1,286 x 16 GFLOP = 44.6 TFLOP; 1,200 x 0.3 s + 1,286 x 0.2 s = 617 s
    text = demo_step._floor(1e11, {128: 2e10, 104: 1.6e10}, {128: 0.3, 104: 0.2}, None, None)
    assert "(1,200 of 128 tokens, 1,286 of 104): 44.6 TFLOP; 617 s" in text
    assert "at least 446 s at the float32 matmul peak of 100.0 GFLOP/s" in text

    lines = ["1 2 + 3 4 , C: 0", "4 6", "9 9 + 1 , 1 0 0"] * 20
    (tmp_path / "text.txt").write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "text.txt"), model_prefix=str(tmp_path / "tokenizer"), vocab_size=16, minloglevel=2
    )
    (tmp_path / "samples").mkdir()
    samples = [{"completion": "1 2 + 3 4"}, {"completion": "4 6"}]
    (tmp_path / "samples" / "iter_1.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (tmp_path / "samples" / "iter_2.jsonl").write_text(json.dumps(samples[1]) + "\n")
    tokenizer = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    expected = sum(len(tokenizer.encode(s)) + 1 for s in ["1 2 + 3 4", "4 6", "4 6"])
    assert demo_step._generated_tokens(tmp_path) == expected
    lines = [{"iteration": 0}, {"iteration": 1, "train_steps": 40, "seconds": {"train": 10.0}}]
    lines.append({"iteration": 2, "train_steps": 60, "seconds": {"train": 15.0}})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    with_run = demo_step._floor(1e11, {128: 2e10, 104: 1.6e10}, {128: 0.3, 104: 0.2}, 1e6, tmp_path)
    assert f"({expected:,} generated tokens at 1.00 MFLOP each)" in with_run
    # 100 steps in 25 s against 100 x 0.2 s alone: a fifth of the time is not the step
    assert "Its fine-tunes: 25 s for 100 steps (250 ms a step), against 20 s for as many steps alone" in with_run
    assert ": 20% of their time is not the step itself" in with_run


def test_demo_step_rejects_a_run_directory_without_samples(tmp_path):
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "demo_step.py"), "--run", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().count("\n") == 0 and "give a STaR run directory" in p.stderr


def test_demo_step_rejects_more_cores_than_the_process_may_use():
    cores = len(os.sched_getaffinity(0))
    for bad in ("0", str(cores + 1)):
        p = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "demo_step.py"), "--cores", bad],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip().count("\n") == 0 and f"between 1 and {cores}" in p.stderr


def test_demo_step_rejects_an_unknown_compute_dtype():
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "demo_step.py"), "--dtype", "float32", "fp8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().count("\n") == 0 and "--dtype takes float32, bfloat16, not fp8" in p.stderr


def test_demo_step_measures_the_shipped_demo_config_on_one_and_two_devices():
    """Each measurement loads configs/demo.yaml with its device count overridden: a demo setting
    that needs more devices (sampler.replicas) must not stop the benchmark from running; a
    measurement may be held to fewer cores than the process has, and run in another compute dtype."""
    script = str(ROOT / "benchmarks" / "demo_step.py")
    cores = str(len(os.sched_getaffinity(0)))
    for kind, devices, use, dtype in (("train", "1", "1", "bfloat16"), ("generate", "2", cores, "float32")):
        p = subprocess.run(
            [sys.executable, script, "--one", kind, "104", devices, use, dtype, "--repeats", "1"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert p.returncode == 0, p.stderr[-2000:]
        out = json.loads(p.stdout.strip().splitlines()[-1])
        assert len(out["seconds"]) == 1 and out["seconds"][0] > 0 and out["flops"] > 0
        assert out["cores"] == int(use) and out["dtype"] == dtype
