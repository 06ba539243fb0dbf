"""Where a run's model and tokenizer come from. Above both backends: a model is read from an
Orbax `save_params` directory (checkpoint.py), from a Hugging Face directory (hf/), or
initialised at random; a tokenizer is a SentencePiece file or a checkpoint's tokenizer."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from starjax import storage
from starjax.checkpoint import restore_params
from starjax.errors import ConfigError
from starjax.hf.convert import load_hf_model
from starjax.hf.tokenizer import load_hf_tokenizer
from starjax.model.transformer import Transformer, create_model
from starjax.schema import Config, ModelConfig
from starjax.sentencepiece_tokenizer import SentencePieceTokenizer
from starjax.sharding import AxisRules
from starjax.tokenizer import Tokenizer


def load_model(directory: str | Path | None, cfg: ModelConfig, rules: AxisRules, seed: int) -> Transformer:
    """Parameters from DIRECTORY (a save_params checkpoint); when it is None, the `model.from_hf`
    checkpoint's, or a random init."""
    if directory is None and cfg.from_hf is not None:
        return load_hf_model(cfg.from_hf, cfg, rules)
    if directory is None:
        return create_model(cfg, rules, seed)
    local = storage.local(directory)
    try:
        return restore_params(local, cfg, rules)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e).replace(str(local.absolute()), str(directory))) from None


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A SentencePiece `.model` file, or a Hugging Face checkpoint's tokenizer: its directory or
    its `tokenizer.json` (special ids from the files beside it)."""
    p = storage.local(path)
    if p.is_dir() or p.name == "tokenizer.json":
        return load_hf_tokenizer(p if p.is_dir() else p.parent)
    return SentencePieceTokenizer.load(p)


def load_run_tokenizer(cfg: Config, command: str) -> Tokenizer:
    """The tokenizer a command runs with: `tokenizer.path`, else `model.from_hf`'s."""
    path = cfg.tokenizer.path or cfg.model.from_hf
    if path is None:
        raise ConfigError(f"starjax {command} needs a tokenizer: set tokenizer.path=FILE.model (or model.from_hf=DIR)")
    key = "tokenizer.path" if cfg.tokenizer.path else "model.from_hf"
    try:
        return load_tokenizer(path)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"{key}: {e}") from None


def with_vocab(cfg: Config, tokenizer: Tokenizer) -> Config:
    """`cfg` with model.vocab_size taken from `tokenizer` when unset (checked when set)."""
    if cfg.model.vocab_size is None:
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=tokenizer.vocab_size))
    if cfg.model.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's {tokenizer.vocab_size}")
    return cfg


def load_chat_template(cfg: Config) -> Callable[[str], str]:
    """task.chat_template: the chat template of the run's Hugging Face tokenizer directory."""
    from starjax.hf.chat import ChatTemplate

    path = cfg.tokenizer.path or cfg.model.from_hf
    if path is None:
        raise ConfigError("task.chat_template=true needs a Hugging Face tokenizer: set model.from_hf=DIR or tokenizer.path=DIR")
    p = storage.local(path)
    tokenizer = load_tokenizer(p)
    return ChatTemplate.from_dir(p if p.is_dir() else p.parent, tokenizer.adds_bos)
