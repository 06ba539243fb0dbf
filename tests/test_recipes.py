"""The real-model recipes (configs/gsm8k_*.yaml, configs/commonsenseqa_*.yaml) end to end, on a
tiny random model in Hugging Face form with its own tokenizer.json and the hand-made data files."""

import json
from pathlib import Path

import pytest
from conftest import make_rules

from starjax.cli import main
from starjax.config import load_config
from starjax.hf.convert import export_hf
from starjax.sources import load_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def _tiny_hf_model(out: Path, texts: list[str], family_overrides: list[str]) -> Path:
    """A 2-layer random model exported as a Hugging Face directory, with a byte-level BPE
    tokenizer.json trained on `texts` (Qwen-style: no bos, eos <|endoftext|>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    cfg = load_config(
        None,
        [
            "model.vocab_size=512",
            "model.num_layers=2",
            "model.d_model=64",
            "model.num_heads=4",
            "model.num_kv_heads=2",
            "model.mlp_dim=128",
            *family_overrides,
        ],
    )
    export_hf(load_model(None, cfg.model, make_rules(), 0), cfg, out, "float32", 5 * 10**9)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    return out


SMALL_RUN = [
    "mesh.data=1",
    "mesh.fsdp=4",
    "mesh.tensor=2",
    "sampler.batch_size=8",
    "sampler.max_new_tokens=72",
    "sampler.progress=false",
    "sampler.prompt_buckets=[256,512,1024]",
    "train.batch_size=4",
    "train.seq_len=1024",
    "star.iterations=1",
    "star.first_steps=2",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, data, family, extra",
    [
        # GSM8K rows carry rationales: a short pre-training on them (from the imported weights) makes
        # the tiny model solve some, so generation, keeping and fine-tuning all run.
        (
            "gsm8k_qwen2.5_1.5b.yaml",
            "gsm8k_sample.jsonl",
            ["model.qkv_bias=true"],
            [
                "task.jsonl.few_shot=1",
                "train.seq_len=256",
                "pretrain.steps=100",
                "pretrain.learning_rate=5e-3",
                "pretrain.batch_size=4",
            ],
        ),
        (
            "commonsenseqa_gemma_2b.yaml",
            "commonsenseqa_sample.jsonl",
            ["model.activation=gelu_tanh", "model.scale_embeddings=true", "model.norm_offset=1.0"],
            [f"task.jsonl.few_shot_file={ROOT / 'configs' / 'data' / 'commonsenseqa_rationales.jsonl'}", "task.jsonl.few_shot=2"],
        ),
    ],
)
def test_recipe_runs_end_to_end_on_a_tiny_model(tmp_path, config, data, family, extra, capsys):
    texts = [line for line in (DATA / data).read_text().splitlines()] + ["Q: A: Answer Choices: Therefore, the answer is"]
    model_dir = _tiny_hf_model(tmp_path / "tiny", texts, family)
    run = tmp_path / "run"
    args = [
        "star",
        str(ROOT / "configs" / config),
        f"model.from_hf={model_dir}",
        f"run_dir={run}",
        f"task.jsonl.train={DATA / data}",
        f"task.jsonl.test={DATA / data}",
        *SMALL_RUN,
        *extra,
    ]
    assert main(args) == 0, capsys.readouterr().err
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["iteration"] == 1 and "test_accuracy" in metrics[-1]
    if "gsm8k" in config:
        assert metrics[-1]["kept"] > 0 and metrics[-1]["train_steps"] > 0
    samples = (run / "samples" / "iter_1.jsonl").read_text().splitlines()
    assert samples and all("completion" in json.loads(s) for s in samples)
    # the run's model is the imported one: its saved config names the checkpoint
    assert load_config(run / "config.yaml").model.from_hf == str(model_dir)
