"""The tfds task: questions from any TFDS dataset (read by starjax/data_files.py)."""

from __future__ import annotations

from collections import Counter

from starjax.data_files import read_tfds
from starjax.errors import ConfigError
from starjax.registry import TASKS
from starjax.tasks.base import Splits, Verifier
from starjax.tasks.formats import FileTask, FileTaskConfig, verifier_name
from starjax.tasks.rows import check_nonempty, held_out_problems
from starjax.tasks.verifiers import get_verifier


@TASKS.register("tfds", config=FileTaskConfig)
class TfdsTask(FileTask):
    """Any TFDS dataset: `train` names it, `train_split`/`test_split` pick splits (test_split null:
    hold out `test_fraction` of train), `fields` maps question/answer/rationale/difficulty to its
    feature names; `test`, when set, names another dataset to take the test split from; `format`
    picks the layout (formats.py)."""

    name = "tfds"

    @classmethod
    def from_config(cls, run) -> "TfdsTask":
        return cls(run.task.tfds, get_verifier(verifier_name(run.task.tfds)), run.data.tfds_data_dir)

    def __init__(self, cfg: FileTaskConfig, verifier: Verifier, data_dir: str | None = None):
        if cfg.train is None:
            raise ConfigError("task.tfds.train is not set; give a TFDS dataset name (NAME or NAME/CONFIG)")
        super().__init__(cfg, verifier)
        self.data_dir = data_dir

    def _rows(self, name: str, split: str):
        rows = read_tfds(name, split, self.data_dir)
        return ((f"{split}-{i}", row) for i, row in enumerate(rows))

    def load(self) -> Splits:
        """Both splits by name (tfds and hf alike: `_rows` reads one)."""
        c, n, skipped = self.cfg, self.name, Counter()
        train = self.problems(self._rows(c.train, c.train_split), skipped)
        check_nonempty(train, f"task.{n}.train {c.train}, split {c.train_split}", skipped, f"check task.{n}.fields")
        if c.test_split is None:
            train, test = held_out_problems(train, c.test_fraction)
            check_nonempty(
                train,
                f"task.{n}.train after holding out test_fraction={c.test_fraction}",
                skipped,
                f"lower task.{n}.test_fraction",
            )
        else:
            test = self.problems(self._rows(c.test or c.train, c.test_split), skipped)
        check_nonempty(
            test, f"the test split of {c.test or c.train}", skipped, f"set task.{n}.test_split or raise task.{n}.test_fraction"
        )
        self.set_shots(train)
        return Splits(train, test, dict(skipped))
