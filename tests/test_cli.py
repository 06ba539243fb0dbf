import subprocess
import sys
from pathlib import Path

import pytest

from starjax.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


def starjax(*args):
    """The real command in a fresh process (fake-device settings need a JAX that has not started)."""
    return subprocess.run(
        [sys.executable, "-m", "starjax.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_info_prints_a_2x2x2_mesh_in_a_fresh_process():
    r = starjax("info", TINY, "runtime.num_cpu_devices=8", "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2")
    assert r.returncode == 0, r.stderr
    assert "mesh: data=2 x fsdp=2 x tensor=2" in r.stdout
    assert "devices: 8 x cpu" in r.stdout
    assert "process: 0 of 1" in r.stdout
    assert "# resolved config" in r.stdout and "num_cpu_devices: 8" in r.stdout
    assert "blocks.*.attn.q" in r.stdout and "('fsdp', 'tensor', None)" in r.stdout


def test_unknown_key_exits_2_with_one_line_suggestion():
    r = starjax("info", TINY, "model.nmu_layers=2")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == ["starjax: error: unknown config key 'model.nmu_layers'; did you mean model.num_layers?"]


def test_wrong_type_exits_2():
    r = starjax("info", TINY, "model.num_layers=four")
    assert r.returncode == 2
    assert r.stderr.strip() == "starjax: error: model.num_layers='four' has the wrong type: expected int"


def test_info_with_forward_on_the_mesh(capsys):
    rc = main(["info", TINY, "runtime.num_cpu_devices=8", "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2",
               "model.num_layers=1", "--forward", "--batch", "4", "--length", "16"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "forward: batch 4 x length 16 -> logits (4, 16, 512)" in out
    assert "P(('data', 'fsdp'), None, 'tensor')" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "model.num_layers=2"], "must be a YAML config file"),
        (["info", "missing.yaml"], "config file 'missing.yaml' not found"),
        (["info", TINY, "mesh.data=3"], "mesh 3x1x1 needs 3 devices but 8 are available"),
        (["info", TINY, "model.vocab_size=null", "--forward"], "--forward needs model.vocab_size"),
        (["info", TINY, "--forward", "--batch", "0"], "--batch and --length must be positive"),
    ],
)
def test_usage_errors_return_2(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_only_implemented_commands_exist():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS) == {"info"}
    bad = starjax("frobnicate", TINY)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
