"""Reading (prompt, completion) records from JSONL files or TFDS datasets (starjax/data_files.py)."""

from __future__ import annotations

from starjax.data_files import UNPARSABLE, read_jsonl, read_tfds
from starjax.schema import DataConfig


def load_records(source: str, cfg: DataConfig, key: str) -> tuple[list[dict], int]:
    """Records as {"prompt", "completion"} dicts (fields renamed per config) and the count of
    unparsable lines (`key`: the config key naming `source`, for errors). Missing or wrong fields
    are left for the tokenizer step to count."""
    if source.startswith("tfds:"):
        name, _, split = source[len("tfds:") :].partition("/")
        raw = read_tfds(name, split or "train", cfg.tfds_data_dir)
        bad = 0
    else:
        rows = [row for _, row in read_jsonl(source, key)]
        raw, bad = [r for r in rows if r is not UNPARSABLE], sum(r is UNPARSABLE for r in rows)
    pf, cf = cfg.prompt_field, cfg.completion_field
    return [{"prompt": r.get(pf), "completion": r.get(cf)} if isinstance(r, dict) else {} for r in raw], bad
