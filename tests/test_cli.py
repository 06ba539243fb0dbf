import subprocess
import sys
from pathlib import Path

import pytest

from starjax.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


def starjax(*args):
    """The real command in a fresh process (fake-device settings need a JAX that has not started)."""
    return subprocess.run([sys.executable, "-m", "starjax.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


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
    rc = main(
        [
            "info",
            TINY,
            "runtime.num_cpu_devices=8",
            "mesh.data=2",
            "mesh.fsdp=2",
            "mesh.tensor=2",
            "model.num_layers=1",
            "--forward",
            "--batch",
            "4",
            "--length",
            "16",
        ]
    )
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
        (["info", TINY, "model.vocab_size=null", "--forward"], "--forward and --memory need model.vocab_size"),
        (["info", TINY, "--forward", "--batch", "0"], "--batch and --length must be positive"),
    ],
)
def test_usage_errors_return_2(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_only_implemented_commands_exist():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS) == {"info", "sample", "sft", "star", "diagnose", "theory", "import-hf", "export-hf"}
    bad = starjax("frobnicate", TINY)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    from test_tokenizer import scratchpad_texts

    from starjax.sentencepiece_tokenizer import train_tokenizer

    return train_tokenizer(scratchpad_texts(), tmp_path_factory.mktemp("tok"), vocab_size=320).source


SAMPLE_ARGS = [
    "model.num_layers=1",
    "sampler.max_new_tokens=5",
    "sampler.batch_size=8",
    "sampler.temperature=0",
    "sampler.prompt_buckets=[16]",
    "mesh.data=2",
    "mesh.fsdp=2",
    "mesh.tensor=2",
]


def test_sample_from_random_init_and_from_a_checkpoint(tmp_path, capsys, tokenizer_file):
    import json

    out = tmp_path / "out.jsonl"
    args = [
        "sample",
        TINY,
        f"tokenizer.path={tokenizer_file}",
        "model.vocab_size=null",
        *SAMPLE_ARGS,
        "--prompt",
        "Input:\\n1 2 + 3 4",
        "--prompt",
        "7",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["Input:\n1 2 + 3 4", "7"]
    assert all(s["num_tokens"] == 5 and s["finish"] == "length" for r in records for s in r["samples"])
    err = capsys.readouterr().err
    assert "random" in err and "2 prompts, 10 tokens" in err

    # the same run from saved parameters gives the same greedy text
    from conftest import make_rules

    from starjax.checkpoint import save_params
    from starjax.config import load_config
    from starjax.model.transformer import create_model
    from starjax.sentencepiece_tokenizer import SentencePieceTokenizer as Tokenizer

    cfg = load_config(TINY, [*SAMPLE_ARGS, f"model.vocab_size={Tokenizer.load(tokenizer_file).vocab_size}"])
    ckpt = save_params(tmp_path / "ckpt", create_model(cfg.model, make_rules((2, 2, 2)), cfg.seed))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Input:\n1 2 + 3 4"}) + "\n\n" + json.dumps("7") + "\n")
    out2 = tmp_path / "out2.jsonl"
    assert (
        main(
            [
                "sample",
                TINY,
                f"tokenizer.path={tokenizer_file}",
                "model.vocab_size=null",
                *SAMPLE_ARGS,
                "--prompts-file",
                str(prompts),
                "--checkpoint",
                str(ckpt),
                "--output",
                str(out2),
            ]
        )
        == 0
    )
    assert [json.loads(line)["samples"] for line in out2.read_text().splitlines()] == [r["samples"] for r in records]


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "needs a tokenizer: set tokenizer.path=FILE.model"),
        (["tokenizer.path=/nope.model"], "tokenizer.path: tokenizer file '/nope.model' not found"),
        (["TOK", "--checkpoint", "/nope"], "checkpoint '/nope' not found"),
        (["TOK", "sampler.top_p=2"], "sampler.top_p=2.0 must be in (0, 1]"),
        (["TOK", "model.vocab_size=8"], "model.vocab_size=8 is smaller than the tokenizer's"),
    ],
)
def test_sample_usage_errors(capsys, tokenizer_file, extra, message):
    extra = [f"tokenizer.path={tokenizer_file}" if a == "TOK" else a for a in extra]
    overrides = [a for a in extra if "=" in a]
    flags = [a for a in extra if "=" not in a]
    assert main(["sample", TINY, *SAMPLE_ARGS, *overrides, "--prompt", "1", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("starjax: error: ") and message in err[-1]


def test_sample_prompt_file_errors(tmp_path, capsys, tokenizer_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1 + 1"}\n')
    assert main(["sample", TINY, f"tokenizer.path={tokenizer_file}", "--prompts-file", str(bad)]) == 2
    assert 'bad.jsonl:1 is not a JSON string or an object with a "prompt" field' in capsys.readouterr().err
    assert main(["sample", TINY, "--prompts-file", str(tmp_path / "none.txt")]) == 2
