"""`starjax import-hf PATH OUT` and `starjax export-hf CONFIG OUT`."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from starjax import runtime
from starjax.config import DTYPES, Config, ConfigError, load_config


def _log(msg: str) -> None:
    print(f"starjax: {msg}", file=sys.stderr, flush=True)


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
    src, out = Path(args.path).expanduser(), Path(args.out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{str(out)!r} exists and is not empty; give a new output directory")
    cfg = load_config(None, [f"model.from_hf={src}", *args.overrides])
    from starjax.hf.convert import import_hf
    from starjax.model.transformer import count_params

    rules = runtime.start(cfg)
    _log(f"importing {src} ({cfg.model.num_layers} layers, d_model {cfg.model.d_model}) as {cfg.model.param_dtype}")
    n = count_params(import_hf(src, out, cfg.model, rules))
    _log(
        f"wrote {out}: {n:,} parameters in params/ (Orbax) with the checkpoint's config and tokenizer; "
        f"use it as model.from_hf={out}"
    )
    return 0


def _export_tokenizer(cfg: Config):
    """The run's tokenizer (its ids go into config.json), or None when it has none."""
    from starjax.tokenizer import load_run_tokenizer

    if cfg.tokenizer.path or cfg.model.from_hf:
        return load_run_tokenizer(cfg, "export-hf")
    trained = Path(cfg.run_dir) / "tokenizer.model"
    if trained.is_file():
        cfg.tokenizer.path = str(trained)
        return load_run_tokenizer(cfg, "export-hf")
    if cfg.model.vocab_size is None:
        raise ConfigError(f"no tokenizer.path, model.from_hf or {trained}; set tokenizer.path or model.vocab_size")
    return None


def run_export(args: argparse.Namespace, cfg: Config) -> int:
    from starjax.checkpoint import load_model
    from starjax.hf.convert import export_hf
    from starjax.star.diagnose import newest_policy

    out = Path(args.out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{str(out)!r} exists and is not empty; give a new output directory")
    if args.dtype not in DTYPES:
        raise ConfigError(f"--dtype {args.dtype!r} must be one of {list(DTYPES)}")
    max_shard = parse_size(args.max_shard_size)
    checkpoint = args.checkpoint or newest_policy(cfg)
    if checkpoint is None and not cfg.model.from_hf:
        raise ConfigError(f"no --checkpoint and no policy in {cfg.run_dir}; give --checkpoint DIR")
    tokenizer = _export_tokenizer(cfg)
    rules = runtime.start(cfg)
    model = load_model(checkpoint, cfg.model, rules, cfg.seed)
    files = export_hf(model, cfg, out, args.dtype, max_shard, tokenizer)
    _log(f"exported {checkpoint or cfg.model.from_hf} to {out} ({len(files)} safetensors file(s), {args.dtype})")
    return 0
