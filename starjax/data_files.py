"""Reading data files, one way each: JSONL lines, TFDS datasets, Hugging Face datasets saved as
files, and the stable held-out split.

TFDS datasets are read with `as_data_source` (array_record, no TensorFlow). A dataset whose
builder is registered is found by name; one prepared locally by a builder this process never
imported is still read from its files under the data dir (`NAME[/CONFIG]/VERSION/dataset_info.json`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from starjax import storage
from starjax.errors import ConfigError

T = TypeVar("T")
UNPARSABLE = object()  # what read_jsonl yields for a line that is not JSON


def read_jsonl(path: str | Path, key: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or UNPARSABLE) per non-empty line. `key` names what holds the
    path (a config key, "prompts file"), for the error when the file is missing."""
    p = storage.local(path)
    if not p.is_file():
        raise ConfigError(f"{key}: file {str(path)!r} not found")
    with p.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield n, json.loads(raw.decode())
            except (UnicodeDecodeError, json.JSONDecodeError):
                yield n, UNPARSABLE


def write_jsonl(out: Path, records: Sequence[Any]) -> None:
    """Written whole, then moved into place: a rerun never duplicates a line, a kill never leaves half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(out)


def held_out(items: Sequence[T], fraction: float, text: Callable[[T], str]) -> tuple[list[T], list[T]]:
    """(kept, held out): an item is held out iff a hash of its text (whitespace runs as one space)
    falls below `fraction`, so its side never depends on what else is in the data."""
    kept, held = [], []
    for item in items:
        digest = hashlib.sha256(" ".join(text(item).split()).encode()).digest()
        (held if int.from_bytes(digest[:8], "big") < fraction * 2**64 else kept).append(item)
    return kept, held


def _version_key(path: Path) -> tuple:
    parts = path.parent.name.split(".")
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


def _local_builder(name: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    root = Path(data_dir or os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets").expanduser()
    versions = sorted(root.glob(f"{name}/*/dataset_info.json"), key=_version_key)
    return tfds.builder_from_directory(str(versions[-1].parent)) if versions else None


def read_tfds(name: str, split: str, data_dir: str | None) -> list[dict[str, Any]]:
    """Every example of NAME's SPLIT as a dict (bytes decoded to str); `data_dir` null = TFDS's default."""
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception:
        # Not a registered builder (or an unknown split): a locally prepared dataset is still readable from its files.
        builder = _local_builder(name, data_dir)
        if builder is None:
            raise ConfigError(f"TFDS dataset {name!r} not found (set data.tfds_data_dir to where it was prepared)") from None
        try:
            source = builder.as_data_source(split=split)
        except Exception:
            raise ConfigError(f"TFDS dataset {name!r} has no split {split!r}; it has {sorted(builder.info.splits)}") from None

    def text(v: Any) -> Any:
        return v.decode() if isinstance(v, bytes) else v

    return [{k: text(v) for k, v in source[i].items()} for i in range(len(source))]


# What a Hub download or `Dataset.save_to_disk` holds: data files by split, beside metadata.
HF_DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json")
_HF_METADATA = {"dataset_info.json", "dataset_dict.json", "state.json"}


def _hf_data_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in HF_DATA_SUFFIXES and p.name not in _HF_METADATA and p.is_file())


def hf_split_files(root: Path, split: str) -> list[Path]:
    """The data files of SPLIT under a dataset directory, in path order, named as the Hub and
    `datasets` name them: a folder SPLIT (`train/data-00000-of-00001.arrow`) or a file name that
    starts with it (`main/train-00000-of-00001.parquet`, `test.jsonl`)."""
    named = re.compile(rf"{re.escape(split)}([-_.]|$)")
    return [p for p in _hf_data_files(root) if split in p.relative_to(root).parts[:-1] or named.match(p.name)]


def _hf_splits(root: Path) -> list[str]:
    found = set()
    for p in _hf_data_files(root):
        rel = p.relative_to(root).parts
        found.add(rel[-2] if len(rel) > 1 and rel[-2] != "data" else re.split(r"[-_.]", p.name)[0])
    return sorted(found)


def _read_hf_file(p: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if p.suffix == ".parquet":
            return pq.read_table(p).to_pylist()
        if p.suffix == ".arrow":  # `datasets` writes the IPC stream format; the file format is read too
            with pa.memory_map(str(p)) as source:
                try:
                    return pa.ipc.open_stream(source).read_all().to_pylist()
                except pa.ArrowInvalid:
                    return pa.ipc.open_file(source).read_all().to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise ConfigError(f"cannot read {str(p)!r}: {e}") from None
    text = p.read_text()
    if p.suffix == ".json" and text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = [row for _, row in read_jsonl(p, "hf data file")]
    if any(row is UNPARSABLE or not isinstance(row, dict) for row in rows):
        raise ConfigError(f"{str(p)!r} has lines that are not JSON objects")
    return rows


def read_hf(path: str | Path, split: str) -> list[dict[str, Any]]:
    """Every row of SPLIT in a Hugging Face dataset saved as files (a Hub download of parquet or
    JSON lines, or `save_to_disk`'s arrow files) as a dict; a single file is read whole."""
    root = storage.local(path)
    if root.is_file():
        return _read_hf_file(root)
    if not root.is_dir():
        raise ConfigError(f"Hugging Face dataset {str(path)!r} not found; give a directory or file")
    files = hf_split_files(root, split)
    if not files:
        raise ConfigError(f"{str(root)!r} has no data files for split {split!r}; it has {_hf_splits(root) or 'none'}")
    return [row for f in files for row in _read_hf_file(f)]
