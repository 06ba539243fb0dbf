"""Reading (prompt, completion) records from JSONL files or TFDS datasets (read by the task layer)."""

from __future__ import annotations

import json
from pathlib import Path

from starjax.config import ConfigError, DataConfig
from starjax.tasks.tfds import read_tfds


def load_records(source: str, cfg: DataConfig) -> tuple[list[dict], int]:
    """Records as {"prompt", "completion"} dicts (fields renamed per config) and the count of
    unparsable lines. Missing or wrong fields are left for the tokenizer step to count."""
    if source.startswith("tfds:"):
        name, _, split = source[len("tfds:") :].partition("/")
        raw = read_tfds(name, split or "train", cfg.tfds_data_dir)
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
