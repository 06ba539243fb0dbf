"""An instruct checkpoint's chat template, rendered as transformers' `apply_chat_template` does.

The template is the Jinja source in the checkpoint's `chat_template.jinja`, or the
`chat_template` of its tokenizer_config.json (a string, or a list of named templates of which
"default" is used). It runs in Jinja's immutable sandbox with transformers' settings and helpers
(trim_blocks, lstrip_blocks, loop controls, `raise_exception`, `tojson`, `strftime_now`), with the
special tokens as variables. With `task.chat_template=true` each task prompt becomes the user turn
of a one-message conversation followed by the assistant header; the model writes the rest.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from starjax.errors import ConfigError
from starjax.hf.tokenizer import _json, _token_text


class ChatTemplate:
    def __init__(self, source: str, special_tokens: dict[str, str], strip_bos: bool = False):
        """`strip_bos`: drop a leading bos the template writes, for a tokenizer that adds bos
        when it encodes a prompt (the ids then equal transformers' `apply_chat_template(tokenize=True)`)."""
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x: Any, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False) -> str:
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(source)
        except jinja2.exceptions.TemplateError as e:
            raise ConfigError(f"the chat template does not compile: {e}") from None
        self.special_tokens = special_tokens
        self.strip_bos = strip_bos

    @classmethod
    def from_dir(cls, directory: str | Path, adds_bos: bool = False) -> "ChatTemplate":
        d = Path(directory).expanduser()
        config = _json(d / "tokenizer_config.json")
        source: Any = (d / "chat_template.jinja").read_text() if (d / "chat_template.jinja").is_file() else None
        source = source or config.get("chat_template")
        if isinstance(source, list):  # [{"name": ..., "template": ...}]
            named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
            source = named.get("default")
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(
                f"task.chat_template=true but {str(d)!r} has no chat template (chat_template.jinja or "
                "tokenizer_config.json's chat_template); use an instruct checkpoint's tokenizer or set it false"
            )
        kinds = ("bos_token", "eos_token", "unk_token", "pad_token")
        special = {k: t for k in kinds if (t := _token_text(config.get(k))) is not None}
        return cls(source, special, strip_bos=adds_bos)

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The conversation as the template writes it (transformers' `tokenize=False` output)."""
        import jinja2

        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt, **self.special_tokens)
        except jinja2.exceptions.TemplateError as e:
            raise ConfigError(f"the chat template failed: {e}") from None

    def __call__(self, prompt: str) -> str:
        """`prompt` as the user's turn, up to where the assistant's answer begins."""
        text = self.render([{"role": "user", "content": prompt}])
        bos = self.special_tokens.get("bos_token")
        if self.strip_bos and bos and text.startswith(bos):
            text = text[len(bos) :]
        return text
