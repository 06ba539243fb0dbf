"""Reading (prompt, completion) records from JSONL files or TFDS datasets (all TFDS calls here)."""

from __future__ import annotations

import json
from pathlib import Path

from starjax.config import ConfigError, DataConfig


def load_records(source: str, cfg: DataConfig) -> tuple[list[dict], int]:
    """Records as {"prompt", "completion"} dicts (fields renamed per config) and the count of
    unparsable lines. Missing or wrong fields are left for the tokenizer step to count."""
    if source.startswith("tfds:"):
        raw = _tfds_records(source[len("tfds:"):], cfg.tfds_data_dir)
        bad = 0
    else:
        raw, bad = _jsonl_records(Path(source))
    pf, cf = cfg.prompt_field, cfg.completion_field
    return [{"prompt": r.get(pf), "completion": r.get(cf)} if isinstance(r, dict) else {} for r in raw], bad


def _jsonl_records(path: Path) -> tuple[list, int]:
    if not path.is_file():
        raise ConfigError(f"data file {str(path)!r} not found")
    records, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    return records, bad


def _tfds_records(spec: str, data_dir: str | None) -> list[dict]:
    import tensorflow_datasets as tfds

    name, _, split = spec.partition("/")
    split = split or "train"
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception:
        # Not a registered builder: a dataset prepared locally is still readable from its files.
        versions = sorted(Path(data_dir or Path.home() / "tensorflow_datasets").glob(f"{name}/*/dataset_info.json"))
        if not versions:
            raise ConfigError(f"TFDS dataset {name!r} not found (set data.tfds_data_dir to where it was prepared)") from None
        source = tfds.builder_from_directory(str(versions[-1].parent)).as_data_source(split=split)

    def text(v):
        return v.decode() if isinstance(v, bytes) else v

    return [{k: text(v) for k, v in source[i].items()} for i in range(len(source))]
