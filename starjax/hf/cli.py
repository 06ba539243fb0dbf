"""`starjax import-hf PATH OUT` and `starjax export-hf CONFIG OUT`."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
from pathlib import Path
from typing import Callable

from starjax import runtime, storage
from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.log import log
from starjax.run_dir import RunDir
from starjax.schema import DTYPES, Config


def parse_size(text: str) -> int:
    """'5GB', '500MB', '2GiB' or a plain byte count."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ConfigError(f"--max-shard-size {text!r} must look like 5GB, 500MB or a byte count")
    unit = (m.group(2) or "B").upper()
    base = 1024 if "I" in unit else 1000
    power = "BKMGT".index(unit[0])
    return int(float(m.group(1)) * base**power)


def run_import(args: argparse.Namespace) -> int:
    src = args.path if storage.is_remote(args.path) else Path(args.path).expanduser()
    out, finish = storage.new_output_dir(args.out)
    cfg = load_config(None, [f"model.from_hf={src}", *args.overrides])
    from starjax.hf.convert import import_hf
    from starjax.model.transformer import count_params

    rules = runtime.start(cfg)
    storage.require_one_process(args.out, "OUT")
    log(f"importing {src} ({cfg.model.num_layers} layers, d_model {cfg.model.d_model}) as {cfg.model.param_dtype}")
    n = count_params(import_hf(src, out, cfg.model, rules))
    finish()
    log(
        f"wrote {args.out}: {n:,} parameters in params/ (Orbax) with the checkpoint's config and tokenizer; "
        f"use it as model.from_hf={args.out}"
    )
    return 0


def _export_tokenizer(cfg: Config, run_dir: Callable[[], RunDir]):
    """(the run's tokenizer, whose ids go into config.json, or None when it has none; the config
    with model.vocab_size filled in). `run_dir()`: the run directory, pulled once when first asked."""
    from starjax.sources import load_run_tokenizer, with_vocab

    if not (cfg.tokenizer.path or cfg.model.from_hf):
        trained = run_dir().tokenizer
        if not trained.is_file():
            if cfg.model.vocab_size is None:
                raise ConfigError(f"no tokenizer.path, model.from_hf or {trained}; set tokenizer.path or model.vocab_size")
            return None, cfg
        cfg = dataclasses.replace(cfg, tokenizer=dataclasses.replace(cfg.tokenizer, path=str(trained)))
    tokenizer = load_run_tokenizer(cfg, "export-hf")
    return tokenizer, with_vocab(cfg, tokenizer)


def run_export(args: argparse.Namespace, cfg: Config) -> int:
    from starjax.hf.convert import export_hf
    from starjax.sources import load_model

    if args.dtype not in DTYPES:
        raise ConfigError(f"--dtype {args.dtype!r} must be one of {list(DTYPES)}")
    max_shard = parse_size(args.max_shard_size)
    out, finish = storage.new_output_dir(args.out)
    run_dir = functools.cache(lambda: RunDir.at(cfg.run_dir).pull())  # a remote one: one download, if any
    checkpoint = args.checkpoint or run_dir().newest_policy()
    if checkpoint is None and not cfg.model.from_hf:
        raise ConfigError(f"no --checkpoint and no policy in {cfg.run_dir}; give --checkpoint DIR")
    tokenizer, cfg = _export_tokenizer(cfg, run_dir)
    rules = runtime.start(cfg)
    storage.require_one_process(args.out, "OUT")
    model = load_model(checkpoint, cfg.model, rules, cfg.seed)
    files = export_hf(model, cfg, out, args.dtype, max_shard, tokenizer)
    finish()
    log(f"exported {checkpoint or cfg.model.from_hf} to {args.out} ({len(files)} safetensors file(s), {args.dtype})")
    return 0
