"""The file tasks' formats (`task.jsonl.format`, `task.tfds.format`) and `FileTask`, which applies one.

A format says how a row becomes a `Problem`, how a problem is prompted (with or without the
hint) and what its gold completion is, how the answer is read back out of a completion, and
which verifier checks it unless the config names one. `plain` is `Task`'s own layout; `gsm8k`
and `commonsenseqa` are the STaR paper's (Zelikman et al. 2022): `Q: ...\\nA:`, continued by a
rationale and the answer. docs/tasks.md shows each layout.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterator, Mapping, Optional

from starjax.data_files import UNPARSABLE, read_jsonl
from starjax.errors import ConfigError
from starjax.tasks.base import Problem, Task, Verifier, answer_line, before_next_question, last_line_answer, question_answer
from starjax.tasks.rows import check_nonempty, numbered, scalar_text, to_problem, to_problems

FILE_FORMATS = ("plain", "gsm8k", "commonsenseqa")  # the layouts below (FORMATS)
FILE_FIELDS = ("question", "answer", "rationale", "difficulty", "choices")


@dataclass(frozen=True)
class FileTaskConfig:
    # jsonl: a file of {question, answer[, rationale][, difficulty]} rows; tfds: a dataset name
    # (NAME or NAME/CONFIG, prepared locally under data.tfds_data_dir or registered).
    train: Optional[str] = None
    # jsonl: the test file, null = hold out `test_fraction` of the training rows (by question hash).
    # tfds: another dataset to take test_split from, null = the train dataset.
    test: Optional[str] = None
    test_fraction: float = 0.1
    # tfds only: splits to read; test_split null = hold out `test_fraction` of train_split.
    train_split: str = "train"
    test_split: Optional[str] = "test"
    # The rows' own names for question/answer/rationale/difficulty (and choices: commonsenseqa).
    fields: Dict[str, str] = field(
        default_factory=lambda: {"question": "question", "answer": "answer", "rationale": "rationale", "difficulty": "difficulty"}
    )
    # Row and prompt layout: plain (`Question:` / `Answer:`), or the STaR paper's gsm8k or
    # commonsenseqa (docs/tasks.md).
    format: str = "plain"
    # exact, numeric, choice, or package.module:function(predicted, gold) -> bool;
    # null = the format's own: plain exact, gsm8k numeric, commonsenseqa choice.
    verifier: Optional[str] = None
    # Problems with a rationale shown before each question: the first N training problems, or of
    # few_shot_file when set (there 0 = all of the file's exemplars: it is written for the purpose).
    few_shot: int = 0
    # A JSONL file of exemplars with rationales, in the same format and field names as the data
    # (the STaR paper's hand-written CommonsenseQA rationales); null = use training problems.
    few_shot_file: Optional[str] = None

    def check(self, cfg) -> None:
        """task.jsonl, task.tfds or task.hf (whichever this is); the data itself only when the run uses it."""
        name = next(n for n in ("jsonl", "tfds", "hf") if getattr(cfg.task, n, None) is self)
        if not 0 <= self.test_fraction < 1 or self.few_shot < 0:
            raise ConfigError(f"task.{name} needs 0 <= test_fraction < 1 and few_shot >= 0")
        unknown = sorted(set(self.fields) - set(FILE_FIELDS))
        if unknown:
            raise ConfigError(f"task.{name}.fields has unknown keys {unknown}; use {', '.join(FILE_FIELDS)}")
        if self.format not in FILE_FORMATS:
            raise ConfigError(f"task.{name}.format={self.format!r} is unknown; choose one of {list(FILE_FORMATS)}")
        if cfg.task.name != name:
            return
        what = {"jsonl": "a JSONL file", "tfds": "a TFDS dataset name", "hf": "a local Hugging Face dataset directory"}[name]
        if self.train is None:
            raise ConfigError(f"task.name={name} needs task.{name}.train: {what}")
        held = self.test is None if name == "jsonl" else self.test_split is None
        if held and self.test_fraction == 0:
            raise ConfigError(
                f"task.{name}: no test data; set task.{name}.test{'' if name == 'jsonl' else '_split'} "
                f"or task.{name}.test_fraction > 0"
            )


def own_answer(completion: str) -> str:
    """The completion up to a line starting `Q:`: a few-shot-prompted model tends to go on and
    invent the next exemplar, and that exemplar's answer is not this question's."""
    return completion.split("\nQ:", 1)[0]


class Format:
    """plain: {question, answer[, rationale]} rows; `Question:` / `Answer:`, the answer on the last line."""

    name = "plain"
    verifier = "exact"

    def to_problem(self, row: Any, uid: str, fields: Mapping[str, str]) -> Problem | str:
        """The row as a Problem, or the reason it is malformed (counted, never fatal)."""
        return to_problem(row, uid, fields)

    def question_text(self, problem: Problem, hint: str | None = None) -> str:
        return question_answer(problem.question, hint)

    def target(self, problem: Problem) -> str | None:
        return None if problem.rationale is None else answer_line(problem.rationale, problem.answer)

    def extract(self, completion: str) -> str | None:
        return last_line_answer(completion)

    def trim(self, completion: str) -> str:
        return before_next_question(completion)


# ---- gsm8k -----------------------------------------------------------------------------------

_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: `48/2 = <<48/2=24>>24`


def after_marker(text: str) -> str | None:
    """The first non-empty line after the last `####`, thousands commas dropped; None without one."""
    if "####" not in text:
        return None
    for line in text.rpartition("####")[2].splitlines():
        if line.strip():
            return line.strip().replace(",", "")
    return None


class Gsm8kFormat(Format):
    """openai/grade-school-math rows, {question, answer: "steps\\n#### 72"}: the steps are the gold
    rationale (calculator annotations removed), the number after `####` the answer."""

    name = "gsm8k"
    verifier = "numeric"

    def to_problem(self, row: Any, uid: str, fields: Mapping[str, str]) -> Problem | str:
        p = to_problem(row, uid, fields)
        if isinstance(p, str) or "####" not in p.answer:
            return p  # no `####`: the whole answer (and any rationale field), as plain reads it
        answer = after_marker(p.answer)
        if answer is None:
            return "empty answer"
        steps = _CALCULATOR.sub("", p.answer.rpartition("####")[0]).strip()
        # An explicit rationale field wins over the steps: someone wrote it on purpose.
        return replace(p, answer=answer, rationale=p.rationale or steps or None)

    def question_text(self, problem: Problem, hint: str | None = None) -> str:
        hint_text = f" (Hint: the answer is {hint})" if hint is not None else ""
        return f"Q: {problem.question}{hint_text}\nA:"

    def target(self, problem: Problem) -> str | None:
        return None if problem.rationale is None else f" {problem.rationale}\n#### {problem.answer}"

    def extract(self, completion: str) -> str | None:
        return after_marker(own_answer(completion))

    def trim(self, completion: str) -> str:
        return own_answer(completion).rstrip()


# ---- commonsenseqa ---------------------------------------------------------------------------

_CHOICES = "\nAnswer Choices:\n"
_CHOICE_LINE = re.compile(r"\(([a-z])\) (.*)")
_ANSWER_IS = "the answer is"


def choices_of(raw: Any) -> list[tuple[str, str]] | str:
    """[(LABEL, text)] from a list of {label, text} (the official rows) or {label: [...], text: [...]}
    (TFDS / Hugging Face rows); or the reason they are malformed."""
    if isinstance(raw, Mapping) and "label" in raw and "text" in raw:
        labels, texts = raw["label"], raw["text"]
        if isinstance(labels, (str, bytes)) or isinstance(texts, (str, bytes)) or len(labels) != len(texts):
            return "malformed choices"
        pairs = list(zip(labels, texts))
    elif isinstance(raw, (list, tuple)) and all(isinstance(c, Mapping) for c in raw):
        pairs = [(c.get("label"), c.get("text")) for c in raw]
    else:
        return "malformed choices"
    out = []
    for label, text in pairs:
        label, text = scalar_text(label), scalar_text(text)
        # One letter per label: the prompt shows `(a)` and the extractor reads one letter back.
        if label is None or text is None or not re.fullmatch(r"[A-Za-z]", label.strip()) or not text.strip():
            return "malformed choices"
        out.append((label.strip().upper(), " ".join(text.split())))
    if len({label for label, _ in out}) != len(out):
        return "malformed choices"
    return out if len(out) >= 2 else "fewer than 2 choices"


def split_choices(question: str) -> tuple[str, list[tuple[str, str]]]:
    """(stem, [(letter, text)]) of a commonsenseqa Problem.question; letters lowercase."""
    stem, _, lines = question.rpartition(_CHOICES)
    return stem, [m.groups() for m in map(_CHOICE_LINE.fullmatch, lines.splitlines()) if m]


class CommonsenseQAFormat(Format):
    """Official rows {answerKey, question: {stem, choices: [{label, text}]}} or flat {question: stem,
    choices, answer}. Problem.question is the stem and the `(a) text` choice lines, the answer the
    uppercase letter. No gold rationales: a target needs a rationale field (few_shot_file)."""

    name = "commonsenseqa"
    verifier = "choice"

    def to_problem(self, row: Any, uid: str, fields: Mapping[str, str]) -> Problem | str:
        if row is UNPARSABLE:
            return "unparsable JSON"
        if not isinstance(row, Mapping):
            return "not an object"
        q = row.get(fields.get("question", "question"))
        nested = isinstance(q, Mapping)  # official rows nest stem and choices under "question"
        raw_stem = q.get("stem") if nested else q
        if raw_stem is None:
            return "missing question"
        stem = scalar_text(raw_stem)
        if stem is None:
            return "non-string question"
        if not stem.strip():
            return "empty question"
        raw = (q if nested else row).get(fields.get("choices", "choices"))
        if raw is None:
            return "missing choices"
        choices = choices_of(raw)
        if isinstance(choices, str):
            return choices
        key = row.get(fields.get("answer", "answer"))
        key = row.get("answerKey") if key is None else key
        if key is None:
            return "missing answer"
        letter = scalar_text(key)
        if letter is None:
            return "non-string answer"
        if letter.strip().upper() not in {label for label, _ in choices}:
            return "answer not among the choice labels"
        lines = "\n".join(f"({label.lower()}) {text}" for label, text in choices)
        flat = {
            "question": " ".join(stem.split()) + _CHOICES + lines,
            "answer": letter.strip().upper(),
            "rationale": row.get(fields.get("rationale", "rationale")),
            "difficulty": row.get(fields.get("difficulty", "difficulty")),
        }
        return to_problem(flat, uid, {})  # checks rationale and difficulty as plain rows do

    def question_text(self, problem: Problem, hint: str | None = None) -> str:
        if hint is None:
            return f"Q: {problem.question}\nA:"
        stem, choices = split_choices(problem.question)
        mark = hint.strip().lower()
        lines = "\n".join(f"({c}) {text}" + (" (CORRECT)" if c == mark else "") for c, text in choices)
        return f"Q: {stem}{_CHOICES}{lines}\nA:"

    def target(self, problem: Problem) -> str | None:
        letter = problem.answer.lower()
        text = dict(split_choices(problem.question)[1]).get(letter)
        if problem.rationale is None or text is None:
            return None
        return f" {problem.rationale} Therefore, the answer is {text} ({letter})."

    def extract(self, completion: str) -> str | None:
        """The `(x)` after the last `the answer is` (any case), on the same line; uppercased."""
        text = own_answer(completion)
        at = text.lower().rfind(_ANSWER_IS)
        if at < 0:
            return None
        m = re.search(r"\(([A-Za-z])\)", text[at + len(_ANSWER_IS) :].split("\n", 1)[0])
        return m.group(1).upper() if m else None

    def trim(self, completion: str) -> str:
        return own_answer(completion).rstrip()


FORMATS: dict[str, Format] = {f.name: f for f in (Format(), Gsm8kFormat(), CommonsenseQAFormat())}


def verifier_name(cfg: FileTaskConfig) -> str:
    """cfg.verifier, or the format's own when it is null (so `format: gsm8k` alone checks numbers)."""
    return cfg.verifier or FORMATS[cfg.format].verifier


class FileTask(Task):
    """jsonl and tfds: rows read, prompted, answered and checked in `cfg.format`'s layout; few-shot
    exemplars from `cfg.few_shot_file` when set, else the first training problems with a target."""

    def __init__(self, cfg: FileTaskConfig, verifier: Verifier):
        super().__init__(verifier, few_shot=cfg.few_shot)
        self.cfg, self.format = cfg, FORMATS[cfg.format]
        # Read now, in make_task: a missing or useless file fails before any compute.
        self.file_shots = None if cfg.few_shot_file is None else self._read_shots(cfg.few_shot_file)

    def problems(self, rows: Iterator[tuple[str, Any]], skipped: Counter) -> list[Problem]:
        return to_problems(rows, self.cfg.fields, skipped, self.format.to_problem)

    def _read_shots(self, path: str) -> list[Problem]:
        key, skipped = f"task.{self.name}.few_shot_file", Counter()
        rows = self.problems(numbered("shot", read_jsonl(path, key)), skipped)
        shots = [p for p in rows if self.target(p) is not None]
        if len(shots) < len(rows):
            skipped["no rationale"] += len(rows) - len(shots)
        check_nonempty(shots, f"{key} ({path})", skipped, f"give exemplar rows in the {self.format.name} format with a rationale")
        return shots[: self.few_shot or None]  # few_shot 0: all of them

    def set_shots(self, train: list[Problem]) -> None:
        if self.file_shots is None:
            super().set_shots(train)
        else:
            self._shots = self.file_shots

    def question_text(self, problem: Problem, hint: str | None = None) -> str:
        return self.format.question_text(problem, hint)

    def target(self, problem: Problem) -> str | None:
        return self.format.target(problem)

    def extract(self, completion: str) -> str | None:
        return self.format.extract(completion)

    def trim(self, completion: str) -> str:
        return self.format.trim(completion)
