"""Hugging Face import/export and tokenizers, checked against transformers' PyTorch models.

The PyTorch side runs in its own Python 3.11 environment (.venv-torch, made by `make test`):
tests/hf/reference.py builds tiny random-weight models of each family with transformers and
records their logits and greedy generations; starjax must reproduce them.
"""

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_rules
from flax import nnx

from starjax.cli import main
from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.hf.convert import export_hf
from starjax.hf.weights import import_params
from starjax.sampling.engine import Sampler
from starjax.sources import load_chat_template, load_model, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "hf" / "reference.py"
TORCH_PYTHON = Path(os.environ.get("STARJAX_TORCH_PYTHON", ROOT / ".venv-torch" / "bin" / "python"))
FAMILIES = ["llama", "mistral", "qwen2", "gemma"]


def _torch(*args: str) -> None:
    if not TORCH_PYTHON.exists():
        pytest.skip(f"no PyTorch reference environment at {TORCH_PYTHON} (needs Python 3.11; `make test` builds it)")
    subprocess.run([str(TORCH_PYTHON), str(REFERENCE), *args], check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf")
    _torch("build", str(out))
    return out


def _cases(ref: Path) -> dict:
    return json.loads((ref / "cases.json").read_text())


def _model(directory: Path, mesh=(1, 1, 1)):
    cfg = load_config(None, [f"model.from_hf={directory}"]).model
    return load_model(None, cfg, make_rules(mesh), 0)


def _padded_logits(model, prompts: list[list[int]]) -> list[np.ndarray]:
    """Logits of a left-padded batch of mixed-length prompts, cut back to each prompt."""
    t = max(map(len, prompts))
    toks, pos, seg = (np.zeros((len(prompts), t), np.int32) for _ in range(3))
    for i, p in enumerate(prompts):
        toks[i, t - len(p) :], pos[i, t - len(p) :], seg[i, t - len(p) :] = p, np.arange(len(p)), 1
    logits, _ = model(jnp.asarray(toks), jnp.asarray(pos), jnp.asarray(seg))
    return [np.asarray(logits[i, t - len(p) :]) for i, p in enumerate(prompts)]


def _assert_logits_match(model, reference: dict, prompts: list[list[int]]) -> None:
    for ours, theirs in zip(_padded_logits(model, prompts), reference["logits"]):
        np.testing.assert_allclose(ours, np.array(theirs, np.float32), rtol=1e-4, atol=1e-4)


def _assert_greedy_match(model, reference: dict, cases: dict) -> None:
    """starjax's sampler, all prompts in one left-padded batch, against transformers' generate per prompt."""
    stub = SimpleNamespace(pad_id=0, eos_id=cases["eos"], extra_stop_ids=[], decode=lambda ids: "")
    sampler = Sampler(model, stub, load_config(None, ["sampler.prompt_buckets=[16]", "sampler.progress=false"]).sampler)
    rows = sampler.generate_ids(cases["prompts"], temperature=0.0, max_new_tokens=cases["new_tokens"])
    assert [row[0].tokens for row in rows] == reference["greedy"]


@pytest.mark.parametrize("family", FAMILIES)
def test_import_matches_transformers_logits_and_greedy(ref, family):
    cases, reference = _cases(ref), json.loads((ref / family / "reference.json").read_text())
    model = _model(ref / family)
    _assert_logits_match(model, reference, cases["prompts"])
    _assert_greedy_match(model, reference, cases)


def test_sharded_import_reads_each_device_block(ref):
    """llama is stored in 12 files with an index; on a 2x2x2 mesh each device reads its own block."""
    single = nnx.to_pure_dict(nnx.state(_model(ref / "llama")))
    sharded_model = _model(ref / "llama", mesh=(2, 2, 2))
    sharded = nnx.to_pure_dict(nnx.state(sharded_model))
    q = sharded["blocks"][0]["attn"]["q"]
    assert len({s.index for s in q.addressable_shards}) == 4  # embed over fsdp x heads over tensor
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), single, sharded)


@pytest.mark.parametrize("family", FAMILIES)
def test_export_then_import_is_identity(ref, tmp_path, family):
    cfg = load_config(None, [f"model.from_hf={ref / family}"])
    model = load_model(None, cfg.model, make_rules(), 0)
    export_hf(model, cfg, tmp_path / "out", "float32", max_shard_bytes=30_000)
    again = import_params(tmp_path / "out", cfg.model, make_rules())
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
        nnx.to_pure_dict(nnx.state(model)),
        nnx.to_pure_dict(nnx.state(again)),
    )


def test_exports_load_in_transformers_and_match(ref, tmp_path):
    """starjax-initialised models (random, perturbed so norms and biases matter) exported per
    family: transformers loads each and gives starjax's logits and greedy tokens."""
    cases, models = _cases(ref), {}
    for i, family in enumerate(FAMILIES):
        cfg = load_config(None, [f"model.from_hf={ref / family}", "model.init_std=0.15"])
        fresh = dataclasses.replace(cfg.model, from_hf=None)  # a fresh starjax model of this family's shape
        model = load_model(None, fresh, make_rules(), seed=i)
        state = nnx.state(model)
        leaves, tree = jax.tree.flatten(state)
        keys = jax.random.split(jax.random.key(i), len(leaves))
        nnx.update(model, jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]))
        export_hf(  # as that family (cfg.model.from_hf), with its tokenizer ids
            model, cfg, tmp_path / family, "float32", max_shard_bytes=5 * 10**9
        )
        models[family] = model
    _torch("run", *(str(tmp_path / f) for f in FAMILIES))
    for family, model in models.items():
        reference = json.loads((tmp_path / family / "reference.json").read_text())
        _assert_logits_match(model, reference, cases["prompts"])
        _assert_greedy_match(model, reference, cases)


@pytest.mark.parametrize("name", ["tok_bos", "tok_nobos", "tok_sp"])
def test_tokenizers_match_transformers(ref, name):
    """tokenizer.json with and without bos (Llama 3 / Qwen style), and a lone SentencePiece
    tokenizer.model (Llama 2 style): the ids transformers' AutoTokenizer gives, and its text back."""
    reference, texts = json.loads((ref / name / "reference.json").read_text()), _cases(ref)["texts"]
    tok = load_tokenizer(ref / name)
    assert [tok.encode(t, add_bos=True) for t in texts] == reference["ids"]
    assert [tok.decode(ids) for ids in reference["ids"]] == reference["decoded"]
    assert (tok.bos_id if tok.adds_bos else None) == (reference["bos"] if name != "tok_nobos" else None)
    assert tok.eos_id == reference["eos"]


@pytest.mark.parametrize("name", ["tok_chatml", "tok_turns"])
def test_chat_templates_match_transformers(ref, name):
    """ChatML without bos (Qwen-Instruct's shape) and bos + turns (Gemma-it's): the text
    apply_chat_template writes, and the ids it tokenizes to from the prompt starjax encodes."""
    reference, texts = json.loads((ref / name / "reference.json").read_text()), _cases(ref)["texts"]
    chat = load_chat_template(load_config(None, [f"tokenizer.path={ref / name}", "task.chat_template=true"]))
    tok = load_tokenizer(ref / name)
    assert [chat.render([{"role": "user", "content": t}]) for t in texts] == reference["chat_texts"]
    assert [tok.encode(chat(t), add_bos=True) for t in texts] == reference["chat_ids"]


def test_import_hf_cli_output_is_a_from_hf_directory(ref, tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["import-hf", str(ref / "qwen2"), str(out)]) == 0
    assert (out / "params").is_dir() and (out / "config.json").is_file()
    direct = nnx.to_pure_dict(nnx.state(_model(ref / "qwen2")))
    via_orbax = nnx.to_pure_dict(nnx.state(_model(out)))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), direct, via_orbax)
    assert main(["import-hf", str(ref / "qwen2"), str(out)]) == 2  # never overwrites
    assert "not empty" in capsys.readouterr().err


def _write_config(d: Path, **fields) -> None:
    d.mkdir(parents=True, exist_ok=True)
    base = {
        "model_type": "llama",
        "vocab_size": 32,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    (d / "config.json").write_text(json.dumps({**base, **fields}))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "unsupported architecture: model_type='gpt2'"),
        ({"attention_bias": True}, "attention_bias=true"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_type='yarn'"),
        ({"hidden_act": "relu"}, "hidden_act='relu'"),
    ],
)
def test_unsupported_configs_are_refused_by_name(tmp_path, fields, message, capsys):
    _write_config(tmp_path / "m", **fields)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(None, [f"model.from_hf={tmp_path / 'm'}"])
    assert main(["import-hf", str(tmp_path / "m"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.split("=")[0] in err


def test_pickle_weights_are_refused(tmp_path):
    _write_config(tmp_path / "m")
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"\x80\x04not unpickled")
    cfg = load_config(None, [f"model.from_hf={tmp_path / 'm'}"])
    with pytest.raises(ConfigError, match="pickle .*convert them to safetensors"):
        load_model(None, cfg.model, make_rules(), 0)


@pytest.mark.parametrize("cut", ["half", "header", "garbage"])
def test_truncated_or_corrupt_safetensors_is_one_line(tmp_path, capsys, cut):
    from safetensors.numpy import save_file

    _write_config(tmp_path / "m")
    f = tmp_path / "m" / "model.safetensors"
    save_file({"model.embed_tokens.weight": np.ones((32, 16), np.float32)}, str(f))
    data = f.read_bytes()
    f.write_bytes({"half": data[: len(data) // 2], "header": data[:5], "garbage": b"not safetensors" * 8}[cut])
    cfg = load_config(None, [f"model.from_hf={tmp_path / 'm'}"])
    with pytest.raises(ConfigError, match="is not a readable safetensors file .*download or export it again"):
        load_model(None, cfg.model, make_rules(), 0)
    assert main(["import-hf", str(tmp_path / "m"), str(tmp_path / "out")]) == 2
    *progress, err = capsys.readouterr().err.strip().splitlines()  # "importing ..." first
    assert err.startswith("starjax: error:") and "model.safetensors" in err
    assert not any("Traceback" in line or "error" in line for line in progress)


def test_missing_tensor_is_named(ref, tmp_path):
    from safetensors.flax import load_file, save_file

    d = tmp_path / "m"
    shutil.copytree(ref / "mistral", d)
    tensors = load_file(str(d / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    cfg = load_config(None, [f"model.from_hf={d}"])
    with pytest.raises(ConfigError, match=r"lacks tensors model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(None, cfg.model, make_rules(), 0)


def test_from_hf_sets_architecture_and_tokenizer(ref, tmp_path):
    """model.from_hf decides the shape whatever the YAML says; its tokenizer is the run's."""
    d = tmp_path / "gemma"
    shutil.copytree(ref / "gemma", d)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(ref / "tok_bos" / f, d / f)
    cfg = load_config(None, [f"model.from_hf={d}", "model.num_layers=7", "model.param_dtype=bfloat16"])
    m = cfg.model
    assert (m.num_layers, m.head_dim, m.num_kv_heads, m.activation, m.norm_offset, m.scale_embeddings) == (
        2,
        32,
        1,
        "gelu_tanh",
        1.0,
        True,
    )
    assert m.param_dtype == "bfloat16"  # dtypes stay the user's
    from starjax.sources import load_run_tokenizer, with_vocab

    assert load_tokenizer(m.from_hf).encode("a", add_bos=True)[0] == 1
    with pytest.raises(ConfigError, match="model.vocab_size=96 is smaller than the tokenizer's 300"):
        with_vocab(cfg, load_run_tokenizer(cfg, "test"))  # found through model.from_hf, and checked against the model
