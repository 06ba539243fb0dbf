"""A task from JSONL files of {"question", "answer"[, "rationale"][, "difficulty"]} rows (names
remapped by `fields`), or of GSM8K / CommonsenseQA rows: `format` picks the layout (formats.py)."""

from __future__ import annotations

from collections import Counter

from starjax import storage
from starjax.data_files import read_jsonl
from starjax.errors import ConfigError
from starjax.registry import TASKS
from starjax.tasks.base import Splits, Verifier
from starjax.tasks.formats import FileTask, FileTaskConfig, verifier_name
from starjax.tasks.rows import check_nonempty, held_out_problems, numbered
from starjax.tasks.verifiers import get_verifier


@TASKS.register("jsonl", config=FileTaskConfig)
class JsonlTask(FileTask):
    name = "jsonl"

    @classmethod
    def from_config(cls, run) -> "JsonlTask":
        return cls(run.task.jsonl, get_verifier(verifier_name(run.task.jsonl)))

    def __init__(self, cfg: FileTaskConfig, verifier: Verifier):
        if cfg.train is None:
            raise ConfigError("task.jsonl.train is not set; give a JSONL file of {question, answer} rows")
        for key in ("train", "test"):  # fail before any compute, not when the loop first loads
            path = getattr(cfg, key)
            if path is not None and not storage.local(path).is_file():
                raise ConfigError(f"task.jsonl.{key}: file {path!r} not found")
        super().__init__(cfg, verifier)

    def load(self) -> Splits:
        c, skipped = self.cfg, Counter()
        train = self.problems(numbered("train", read_jsonl(c.train, "task.jsonl.train")), skipped)
        check_nonempty(train, f"task.jsonl.train ({c.train})", skipped, "check its rows")
        if c.test is None:
            train, test = held_out_problems(train, c.test_fraction)
            check_nonempty(
                train,
                f"task.jsonl.train after holding out test_fraction={c.test_fraction}",
                skipped,
                "lower task.jsonl.test_fraction",
            )
        else:
            test = self.problems(numbered("test", read_jsonl(c.test, "task.jsonl.test")), skipped)
        check_nonempty(
            test,
            f"the test split ({c.test or f'held out from {c.train}'})",
            skipped,
            "set task.jsonl.test or raise task.jsonl.test_fraction",
        )
        self.set_shots(train)
        return Splits(train, test, dict(skipped))
