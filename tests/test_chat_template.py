"""task.chat_template: every task prompt (hinted ones too) becomes the user's turn of the
tokenizer's chat template; clear errors without one. (Parity with transformers' rendering:
tests/test_hf.py::test_chat_templates_match_transformers.)"""

import json

import pytest

from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.hf.chat import ChatTemplate
from starjax.tasks.registry import make_task

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _tokenizer_dir(path, template=CHATML):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(["What is 2 + 3? 5"] * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=specials))
    path.mkdir()
    tok.save(str(path / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    if template is not None:
        config["chat_template"] = template
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


def _task(tmp_path, *overrides):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "5", "rationale": "2 + 3 = 5"}) + "\n")
    return make_task(load_config(None, ["task.name=jsonl", f"task.jsonl.train={rows}", f"task.jsonl.test={rows}", *overrides]))


def test_prompts_become_the_user_turn(tmp_path):
    d = _tokenizer_dir(tmp_path / "tok")
    plain, chat = _task(tmp_path), _task(tmp_path, "task.chat_template=true", f"tokenizer.path={d}")
    p = chat.load().train[0]
    plain.load()
    for hint in (False, True):
        want = f"<|im_start|>user\n{plain.prompt(p, hint=hint)}<|im_end|>\n<|im_start|>assistant\n"
        assert chat.prompt(p, hint=hint) == want
    assert chat.target(p) == plain.target(p)  # the assistant's turn is what the model writes


def test_missing_or_broken_templates_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="needs a Hugging Face tokenizer"):
        _task(tmp_path, "task.chat_template=true")
    with pytest.raises(ConfigError, match="has no chat template"):
        _task(tmp_path, "task.chat_template=true", f"tokenizer.path={_tokenizer_dir(tmp_path / 'none', None)}")
    with pytest.raises(ConfigError, match="does not compile"):
        _task(tmp_path, "task.chat_template=true", f"tokenizer.path={_tokenizer_dir(tmp_path / 'bad', '{% for %}')}")
    refusing = ChatTemplate("{{ raise_exception('System role not supported') }}", {})
    with pytest.raises(ConfigError, match="the chat template failed: System role not supported"):
        refusing("hello")
