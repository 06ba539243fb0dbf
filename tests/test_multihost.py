"""Multi-process runs on JAX's distributed runtime, for real: two local processes with 4 fake CPU
devices each (CPU collectives over gloo, coordinator on 127.0.0.1) against one process with 8."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_star import ROOT, comparable, star_args, write_task

from starjax.config import load_config
from starjax.errors import ConfigError

MESH = ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]
RUN = ["star.iterations=1", "pretrain.steps=40", *MESH]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(d: Path, run_dir: Path, processes: int, *extra: str, per_process=None) -> list[subprocess.Popen]:
    """`starjax star` as `processes` cooperating processes sharing 8 CPU devices."""
    port, procs = _port(), []
    for i in range(processes):
        dist = (
            []
            if processes == 1
            else [
                "runtime.distributed.mode=explicit",
                f"runtime.distributed.coordinator_address=127.0.0.1:{port}",
                f"runtime.distributed.num_processes={processes}",
                f"runtime.distributed.process_id={i}",
                "runtime.distributed.heartbeat_timeout=5",
                "runtime.distributed.initialization_timeout=60",
            ]
        )
        args = star_args(
            d, run_dir, *RUN, f"runtime.num_cpu_devices={8 // processes}", *dist, *extra, *((per_process or {}).get(i, []))
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "starjax.cli", "star", *args],
                cwd=ROOT,
                env={**os.environ, "JAX_PLATFORMS": "cpu"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = 600) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a process hung") from None
        out.append((p.returncode, err))
    return out


def params(run_dir: Path) -> dict:
    """The run's iteration-1 policy, restored onto this test process's single device."""
    from conftest import make_rules
    from flax import nnx

    from starjax.checkpoint import restore_params
    from starjax.sentencepiece_tokenizer import SentencePieceTokenizer as Tokenizer

    vocab = Tokenizer.load(run_dir / "tokenizer.model").vocab_size
    cfg = load_config(run_dir / "config.yaml", [f"model.vocab_size={vocab}"])
    return nnx.to_pure_dict(nnx.state(restore_params(run_dir / "params" / "iter_1", cfg.model, make_rules())))


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, Path]:
    """The reference: one process, 8 devices."""
    d = write_task(tmp_path_factory.mktemp("task"))
    run = tmp_path_factory.mktemp("single") / "run"
    [(rc, err)] = finish(launch(d, run, 1))
    assert rc == 0, err[-3000:]
    return d, run


@pytest.mark.slow
def test_two_processes_equal_one_process(single, tmp_path):
    d, ref = single
    run = tmp_path / "run"
    results = finish(launch(d, run, 2))
    assert [rc for rc, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    assert comparable(run) == comparable(ref)
    assert (run / "samples" / "iter_1.jsonl").read_text() == (ref / "samples" / "iter_1.jsonl").read_text()
    import jax

    # Cross-process reductions add in another order; Adam turns those last-bit differences into
    # small ones in a few weights, so: close everywhere, and equal to ~1e-7 on average.
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)), params(run), params(ref)))
    assert max(d.max() for d in diffs) < 1e-4 and np.mean([d.mean() for d in diffs]) < 1e-6
    assert "starjax: iteration 1" in results[0][1] and "starjax: iteration 1" not in results[1][1]  # process 0 logs


@pytest.mark.slow
def test_a_killed_two_process_run_resumes_in_one_process(single, tmp_path):
    d, ref = single
    run = tmp_path / "run"
    procs = launch(d, run, 2)
    deadline = time.time() + 300
    while not (run / "state" / "3").exists():  # iteration 1 generated (state step 3n + phase)
        assert all(p.poll() is None for p in procs) and time.time() < deadline, "run ended before iteration 1 generated"
        time.sleep(0.05)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
    finish(procs)
    [(rc, err)] = finish(launch(d, run, 1))
    assert rc == 0, err[-3000:]
    assert "resuming: iteration 1 is" in err  # generated, or trained if the kill came a moment later
    assert comparable(run) == comparable(ref)


@pytest.mark.slow
def test_a_dead_process_makes_the_other_exit_with_a_message(tmp_path):
    d = write_task(tmp_path)
    procs = launch(d, tmp_path / "run", 2, "pretrain.steps=400")
    deadline = time.time() + 300
    while not (tmp_path / "run" / "pretrain").exists():  # both are in the pre-training loop
        assert all(p.poll() is None for p in procs) and time.time() < deadline
        time.sleep(0.05)
    procs[1].kill()
    began = time.time()
    [(rc, err), _] = finish(procs, timeout=60)
    assert rc == 1 and time.time() - began < 30, err[-2500:]
    # the watchdog noticed, or a collective with the dead process failed first: either way one line
    line = re.findall(r"starjax: error: .*", err)
    assert len(line) == 1 and "resumes from its last checkpoint" in line[0], err[-2500:]
    assert "process 1 stopped responding" in line[0] or "lost another process during a collective" in line[0]


@pytest.mark.slow
def test_processes_with_different_configs_refuse_to_start(tmp_path):
    d = write_task(tmp_path)
    results = finish(launch(d, tmp_path / "run", 2, per_process={1: ["seed=7"]}), timeout=120)
    assert [rc for rc, _ in results] == [2, 2]
    assert all("process(es) [1] run a different config than process 0" in err for _, err in results)


def test_distributed_settings_are_checked(monkeypatch):
    with pytest.raises(ConfigError, match="needs runtime.distributed.coordinator_address"):
        load_config(None, ["runtime.distributed.mode=explicit"])
    with pytest.raises(ConfigError, match=r"process_id=2 must be in \[0, num_processes=2\)"):
        load_config(
            None,
            [
                "runtime.distributed.mode=explicit",
                "runtime.distributed.coordinator_address=h:1",
                "runtime.distributed.num_processes=2",
                "runtime.distributed.process_id=2",
            ],
        )
    with pytest.raises(ConfigError, match="must be off, auto or explicit"):
        load_config(None, ["runtime.distributed.mode=slurm"])
    from starjax.multihost import _env_args

    monkeypatch.setenv("STARJAX_COORDINATOR", "10.0.0.1:1234")
    monkeypatch.setenv("STARJAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("STARJAX_PROCESS_ID", "3")
    monkeypatch.setenv("STARJAX_LOCAL_DEVICE_IDS", "0,1")
    assert _env_args() == {
        "coordinator_address": "10.0.0.1:1234",
        "num_processes": 4,
        "process_id": 3,
        "local_device_ids": [0, 1],
    }
    monkeypatch.delenv("STARJAX_PROCESS_ID")
    with pytest.raises(ConfigError, match="STARJAX_PROCESS_ID"):
        _env_args()


def test_auto_mode_outside_a_cluster_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "STARJAX_"))}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "starjax.cli",
            "info",
            str(ROOT / "configs" / "tiny.yaml"),
            "runtime.distributed.mode=auto",
            "runtime.distributed.initialization_timeout=5",
        ],
        cwd=ROOT,
        env={**env, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    err = [line for line in p.stderr.splitlines() if line.startswith("starjax:")]
    assert len(err) == 1 and "cannot join the distributed runtime" in err[0]


SCRIPTS = ROOT / "scripts"


@pytest.mark.parametrize("script", ["launch_hosts.sh", "launch_tpu_vm.sh", "slurm_star.sbatch"])
def test_launch_scripts_print_usage_and_fail_early_on_bad_arguments(script):
    h = subprocess.run(["bash", str(SCRIPTS / script), "-h"], capture_output=True, text=True)
    assert h.returncode == 0 and h.stdout.startswith("usage:")
    for bad in ([], ["--", "frobnicate", "configs/tiny.yaml"]):
        p = subprocess.run(["bash", str(SCRIPTS / script), *bad], capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
        assert p.stderr.startswith(f"{script}: error: ")


def test_tpu_launcher_creates_installs_runs_on_every_worker_and_deletes():
    p = subprocess.run(
        [
            "bash",
            str(SCRIPTS / "launch_tpu_vm.sh"),
            "-t",
            "star",
            "-z",
            "us-central2-b",
            "-c",
            "-a",
            "v4-16",
            "-D",
            "-n",
            "--",
            "star",
            "configs/tiny.yaml",
            "seed=3",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    steps = p.stdout.splitlines()
    assert steps[0].startswith("gcloud compute tpus tpu-vm create star --zone us-central2-b --accelerator-type v4-16")
    assert any(" scp " in s and "--worker=all" in s for s in steps)
    run = next(s for s in steps if "starjax\\ star" in s)
    assert "--worker=all" in run and "seed=3" in run and "runtime.distributed.mode=auto" in run
    assert steps[-1].startswith("gcloud compute tpus tpu-vm delete star")


@pytest.mark.parametrize("script", ["launch_hosts.sh", "launch_tpu_vm.sh"])
def test_launchers_run_import_hf_and_export_hf(script):
    """As docs/multihost.md says, both run as multi-process jobs; import-hf's first argument is a
    checkpoint directory on the hosts, not a config file here."""
    where = ["-H", "gpu1,gpu2"] if script == "launch_hosts.sh" else ["-t", "star", "-z", "us-central2-b", "-S"]
    for command in (["import-hf", "/data/Qwen2.5-1.5B", "/data/qwen"], ["export-hf", "configs/tiny.yaml", "/data/out"]):
        p = subprocess.run(
            ["bash", str(SCRIPTS / script), *where, "-n", "--", *command], capture_output=True, text=True, cwd=ROOT
        )
        assert p.returncode == 0, p.stderr
        assert f"starjax {command[0]} {command[1]} {command[2]}" in p.stdout.replace("\\ ", " ").replace("\\", "")


def test_hosts_launcher_runs_a_real_two_process_job(tmp_path):
    """Two `local` hosts: the STARJAX_* variables bring both processes into one 8-device runtime."""
    p = subprocess.run(
        [
            "bash",
            str(SCRIPTS / "launch_hosts.sh"),
            "-H",
            "local,local",
            "-p",
            str(_port()),
            "-l",
            str(tmp_path),
            "--",
            "info",
            "configs/tiny.yaml",
            "runtime.num_cpu_devices=4",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    for i in (0, 1):
        log = (tmp_path / f"process-{i}.log").read_text()
        assert f"process: {i} of 2" in log and "devices: 8 x cpu (4 local)" in log
