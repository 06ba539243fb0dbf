"""A task from JSONL files of {"question", "answer"[, "rationale"][, "difficulty"]} rows (names
remapped by `fields`), or of GSM8K / CommonsenseQA rows: `format` picks the layout (formats.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from starjax.config import ConfigError, FileTaskConfig
from starjax.tasks.base import Splits, Verifier
from starjax.tasks.formats import FileTask
from starjax.tasks.rows import check_nonempty, held_out, read_jsonl


class JsonlTask(FileTask):
    name = "jsonl"

    def __init__(self, cfg: FileTaskConfig, verifier: Verifier):
        if cfg.train is None:
            raise ConfigError("task.jsonl.train is not set; give a JSONL file of {question, answer} rows")
        for key in ("train", "test"):  # fail before any compute, not when the loop first loads
            path = getattr(cfg, key)
            if path is not None and not Path(path).expanduser().is_file():
                raise ConfigError(f"task.jsonl.{key}: file {path!r} not found")
        super().__init__(cfg, verifier)

    def load(self) -> Splits:
        c, skipped = self.cfg, Counter()
        train = self.problems(read_jsonl(c.train, "train", "task.jsonl.train"), skipped)
        check_nonempty(train, f"task.jsonl.train ({c.train})", skipped, "check its rows")
        if c.test is None:
            train, test = held_out(train, c.test_fraction)
            check_nonempty(
                train,
                f"task.jsonl.train after holding out test_fraction={c.test_fraction}",
                skipped,
                "lower task.jsonl.test_fraction",
            )
        else:
            test = self.problems(read_jsonl(c.test, "test", "task.jsonl.test"), skipped)
        check_nonempty(
            test,
            f"the test split ({c.test or f'held out from {c.train}'})",
            skipped,
            "set task.jsonl.test or raise task.jsonl.test_fraction",
        )
        self.set_shots(train)
        return Splits(train, test, dict(skipped))
