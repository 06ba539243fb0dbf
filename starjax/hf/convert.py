"""Whole-checkpoint conversions: a Hugging Face directory <-> a starjax model.

An `import-hf` output is itself a valid `model.from_hf` directory: the Hugging Face config.json
and tokenizer files beside the parameters as an Orbax checkpoint (`params/`), which restores
straight onto any mesh faster than re-reading safetensors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from starjax import multihost, storage
from starjax.checkpoint import restore_params, save_params
from starjax.errors import ConfigError
from starjax.hf.config import hf_config_from_model, read_hf_config
from starjax.hf.tokenizer import TOKENIZER_FILES
from starjax.hf.weights import export_weights, import_params, replace_dir
from starjax.model.transformer import Transformer
from starjax.schema import Config, ModelConfig
from starjax.sharding import AxisRules

PARAMS = "params"


def load_hf_model(directory: str | Path, cfg: ModelConfig, rules: AxisRules) -> Transformer:
    """The checkpoint's model on `rules.mesh`: from its Orbax `params/` if `import-hf` wrote one,
    else from its safetensors."""
    d = storage.local(directory)
    if (d / PARAMS).is_dir():
        try:
            return restore_params(d / PARAMS, cfg, rules)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(str(e)) from None
    return import_params(d, cfg, rules)


def copy_side_files(src: Path, dst: Path, names: tuple[str, ...] = ("config.json", *TOKENIZER_FILES)) -> None:
    for name in names:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def import_hf(directory: str | Path, out: str | Path, cfg: ModelConfig, rules: AxisRules) -> Transformer:
    """Converts a Hugging Face checkpoint to OUT (params/ + its config and tokenizer files); returns
    the imported model."""
    src, dst = storage.local(directory), Path(out).expanduser()
    model = import_params(src, cfg, rules)
    tmp = _fresh(dst)
    save_params(tmp / PARAMS, model)  # every process writes its shards
    if multihost.is_lead():
        copy_side_files(src, tmp)
        replace_dir(tmp, dst)
    multihost.barrier("import-hf done")
    return model


def _fresh(dst: Path) -> Path:
    """An empty DST.partial that process 0 made and every process sees."""
    tmp = dst.with_name(dst.name + ".partial")
    if multihost.is_lead():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    multihost.barrier(f"{tmp.name} ready")
    return tmp


def export_hf(model: Transformer, cfg: Config, out: str | Path, dtype: str, max_shard_bytes: int, tokenizer=None) -> list[str]:
    """Writes a Hugging Face directory transformers can load: config.json, safetensors weights,
    and the tokenizer files of `cfg.model.from_hf` (or tokenizer.path's SentencePiece model)."""
    dst = Path(out).expanduser()
    source = read_hf_config(cfg.model.from_hf) if cfg.model.from_hf else None
    ids = {}
    if tokenizer is not None:
        ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
    hf = hf_config_from_model(model.cfg, dtype, ids, source)
    tmp = _fresh(dst)
    files = export_weights(model, tmp, dtype, max_shard_bytes)
    if multihost.is_lead():
        (tmp / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
        if cfg.model.from_hf:
            copy_side_files(storage.local(cfg.model.from_hf), tmp, TOKENIZER_FILES)
        elif cfg.tokenizer.path and cfg.tokenizer.path.endswith(".model"):
            shutil.copy2(storage.local(cfg.tokenizer.path), tmp / "tokenizer.model")
        replace_dir(tmp, dst)
    multihost.barrier("export-hf done")
    return files
