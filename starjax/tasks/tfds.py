"""Reading TFDS datasets (the tfds task, and `tfds:` training records), and the tfds task.

Datasets are read with `as_data_source` (array_record, no TensorFlow). A dataset whose builder
is registered is found by name; one prepared locally by a builder this process never imported
is still read from its files under the data dir (`NAME[/CONFIG]/VERSION/dataset_info.json`).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from starjax.config import ConfigError, FileTaskConfig
from starjax.tasks.base import Splits, Verifier
from starjax.tasks.formats import FileTask
from starjax.tasks.rows import check_nonempty, held_out


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


class TfdsTask(FileTask):
    """Any TFDS dataset: `train` names it, `train_split`/`test_split` pick splits (test_split null:
    hold out `test_fraction` of train), `fields` maps question/answer/rationale/difficulty to its
    feature names; `test`, when set, names another dataset to take the test split from; `format`
    picks the layout (formats.py)."""

    name = "tfds"

    def __init__(self, cfg: FileTaskConfig, verifier: Verifier, data_dir: str | None = None):
        if cfg.train is None:
            raise ConfigError("task.tfds.train is not set; give a TFDS dataset name (NAME or NAME/CONFIG)")
        super().__init__(cfg, verifier)
        self.data_dir = data_dir

    def _rows(self, name: str, split: str):
        rows = read_tfds(name, split, self.data_dir)
        return ((f"{split}-{i}", row) for i, row in enumerate(rows))

    def load(self) -> Splits:
        c, skipped = self.cfg, Counter()
        train = self.problems(self._rows(c.train, c.train_split), skipped)
        check_nonempty(train, f"TFDS {c.train}/{c.train_split}", skipped, "check task.tfds.fields")
        if c.test_split is None:
            train, test = held_out(train, c.test_fraction)
            check_nonempty(
                train,
                f"task.tfds.train after holding out test_fraction={c.test_fraction}",
                skipped,
                "lower task.tfds.test_fraction",
            )
        else:
            test = self.problems(self._rows(c.test or c.train, c.test_split), skipped)
        check_nonempty(
            test, f"the test split of {c.test or c.train}", skipped, "set task.tfds.test_split or raise task.tfds.test_fraction"
        )
        self.set_shots(train)
        return Splits(train, test, dict(skipped))
