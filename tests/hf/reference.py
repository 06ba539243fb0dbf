"""Reference outputs from transformers' PyTorch models, for starjax's parity tests.

Runs in the PyTorch environment (.venv-torch, Python 3.11; see tests/hf/requirements-torch.txt),
never imported by starjax or by the tests themselves:

  reference.py build OUT   tiny random-weight models of each family (OUT/<family>/) and tokenizer
                           directories (OUT/tok_*/), each with reference.json: per-prompt logits,
                           greedy continuations, token ids of sample texts, chat template renders
  reference.py run DIR...  reference.json for existing checkpoint directories (starjax exports)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

VOCAB = 96
EOS = 2
PROMPTS = [[1, 17, 33, 5], [1, 60, 61, 62, 63, 64, 9, 10, 11, 40, 41, 90], [1, 7], [1, 50, 49, 48, 47, 46, 45]]
NEW_TOKENS = 8
TEXTS = ["Q: Natalia sold 48 clips in April.\nA:", " The answer is 72 (e).", "héllo  wörld\n\n#### 1,234", "a"]

SHAPE = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    bos_token_id=1,
    eos_token_id=EOS,
    pad_token_id=0,
)
FAMILIES = {
    # Llama 3.1-style rotary scaling, small enough that all three frequency bands occur at head_dim 16.
    "llama": (
        transformers.LlamaConfig,
        dict(
            rope_theta=500000.0,
            rope_scaling=dict(
                rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64
            ),
        ),
    ),
    "mistral": (transformers.MistralConfig, dict(sliding_window=None, rope_theta=1e6)),
    "qwen2": (transformers.Qwen2Config, dict(tie_word_embeddings=True)),
    # Gemma: head_dim != hidden / heads, one kv head, saved in bfloat16.
    "gemma": (transformers.GemmaConfig, dict(head_dim=32, num_key_value_heads=1)),
}


def reference(model_dir: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    out = {"logits": [], "greedy": []}
    with torch.no_grad():
        for p in PROMPTS:
            ids = torch.tensor([p])
            out["logits"].append(model(ids).logits[0].tolist())
            gen = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                eos_token_id=EOS,
                pad_token_id=0,
            )
            out["greedy"].append(gen[0, len(p) :].tolist())
    (model_dir / "reference.json").write_text(json.dumps(out))


def build_model(out: Path, family: str) -> None:
    cls, extra = FAMILIES[family]
    cfg = cls(**{**SHAPE, **extra})
    torch.manual_seed(sum(map(ord, family)))
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():  # every weight random, norms and biases included, so each mapping is exercised
        for name, p in model.named_parameters():
            p.copy_(
                torch.randn_like(p) * (0.3 if "norm" in name else 0.15) + (1.0 if "norm" in name and family != "gemma" else 0.0)
            )
    if family == "gemma":
        model = model.to(torch.bfloat16)
    d = out / family
    # Llama in several files with an index, the others in one file.
    model.save_pretrained(d, max_shard_size="40KB" if family == "llama" else "50GB")
    reference(d)


def build_tokenizers(out: Path) -> None:
    """tokenizer.json with bos added (Llama 3 style) and without (Qwen style), and a SentencePiece
    tokenizer.model alone (Llama 2 style); reference ids from transformers' AutoTokenizer."""
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    corpus = TEXTS * 20 + ["the quick brown fox jumps over the lazy dog 0123456789"] * 20
    for name, with_bos in (("tok_bos", True), ("tok_nobos", False)):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(
            corpus,
            trainers.BpeTrainer(
                vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
            ),
        )
        if with_bos:
            tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        fast = transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>" if with_bos else None, eos_token="</s>", pad_token="<pad>"
        )
        fast.save_pretrained(out / name)
    d = out / "tok_sp"
    d.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_prefix=str(d / "tokenizer"),
        vocab_size=400,
        model_type="bpe",
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        # as Llama 2's tokenizer.model, which transformers' conversion assumes
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
    )
    (d / "tokenizer.vocab").unlink()
    (d / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "add_bos_token": True,
                "add_eos_token": False,
                "legacy": True,
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
            }
        )
    )
    for name in ("tok_bos", "tok_nobos", "tok_sp"):
        t = AutoTokenizer.from_pretrained(out / name)
        ref = {
            "ids": [t(text)["input_ids"] for text in TEXTS],
            "decoded": [t.decode(t(text)["input_ids"], skip_special_tokens=True) for text in TEXTS],
            "bos": t.bos_token_id,
            "eos": t.eos_token_id,
            "pad": t.pad_token_id,
        }
        (out / name / "reference.json").write_text(json.dumps(ref))


# Chat templates in the two shapes instruct checkpoints use (written for these tests): ChatML with
# a default system turn and no bos (Qwen2.5-Instruct's shape), and bos + turns that refuse a
# system role (Gemma-it's shape, with raise_exception, loop variables and filters).
CHATML = (
    "{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}{%- set rest = messages[1:] %}"
    "{%- else %}{%- set system = 'You are a helpful assistant.' %}{%- set rest = messages %}{%- endif %}"
    "{{- '<|im_start|>system\\n' + system + '<|im_end|>\\n' }}"
    "{%- for m in rest %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
TURNS = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)


def build_chat_tokenizers(out: Path, corpus: list[str]) -> None:
    """tok_chatml (no bos, eos <|im_end|>) and tok_turns (adds bos), each with its chat template;
    reference: apply_chat_template's text and ids for each sample text as the user's turn."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    shapes = {
        "tok_chatml": (CHATML, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>"),
        "tok_turns": (TURNS, ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>"),
    }
    for name, (template, specials, bos, eos) in shapes.items():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(
            corpus,
            trainers.BpeTrainer(vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
        )
        if bos:
            tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
        fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=specials[0])
        fast.chat_template = template
        fast.save_pretrained(out / name)
        t = AutoTokenizer.from_pretrained(out / name)
        texts, ids = [], []
        for text in TEXTS:
            messages = [{"role": "user", "content": text}]
            texts.append(t.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            encoded = t.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
            ids.append(list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded))
        (out / name / "reference.json").write_text(json.dumps({"chat_texts": texts, "chat_ids": ids}))


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "build":
        out = Path(argv[1])
        for family in FAMILIES:
            build_model(out, family)
        build_tokenizers(out)
        build_chat_tokenizers(out, TEXTS * 20 + ["the quick brown fox jumps over the lazy dog 0123456789"] * 20)
        (out / "cases.json").write_text(
            json.dumps({"prompts": PROMPTS, "new_tokens": NEW_TOKENS, "eos": EOS, "texts": TEXTS, "families": list(FAMILIES)})
        )
    elif len(argv) >= 2 and argv[0] == "run":
        for d in argv[1:]:
            reference(Path(d))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
