"""The hf task: questions from a Hugging Face dataset saved as local files (read by
starjax/data_files.py with pyarrow: no `datasets` install needed)."""

from __future__ import annotations

from starjax.data_files import read_hf
from starjax.errors import ConfigError
from starjax.registry import TASKS
from starjax.tasks.base import Verifier
from starjax.tasks.formats import FileTaskConfig, verifier_name
from starjax.tasks.tfds import TfdsTask
from starjax.tasks.verifiers import get_verifier


@TASKS.register("hf", config=FileTaskConfig)
class HfTask(TfdsTask):
    """A dataset as the Hub serves it (parquet or JSON lines) or `save_to_disk` writes it (arrow):
    `train` is its directory (or one file), `train_split`/`test_split` pick splits by the files'
    names (test_split null: hold out `test_fraction` of train), `test` another directory to take
    the test split from; `fields`, `format`, `verifier` and few-shot settings as for tfds."""

    name = "hf"

    @classmethod
    def from_config(cls, run) -> "HfTask":
        return cls(run.task.hf, get_verifier(verifier_name(run.task.hf)))

    def __init__(self, cfg: FileTaskConfig, verifier: Verifier):
        if cfg.train is None:
            raise ConfigError("task.hf.train is not set; give a local Hugging Face dataset directory")
        super().__init__(cfg, verifier)

    def _rows(self, path: str, split: str):
        return ((f"{split}-{i}", row) for i, row in enumerate(read_hf(path, split)))
