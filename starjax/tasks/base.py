"""The task protocol: what the STaR loop needs to know about a dataset of questions.

A task loads its splits as `Problem`s, formats prompts (optionally with a hint: the correct
answer, for rationalization), writes gold targets where it can (seed data for pre-training),
extracts the answer from a completion and verifies it. Completions always end with the answer
on its own last line, after the rationale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str
    difficulty: str = ""  # a label to group accuracy by ("3" digits, "hard", ...)
    rationale: str | None = None  # a gold rationale, when the data has one


@dataclass
class Splits:
    train: list[Problem]
    test: list[Problem]
    skipped: dict[str, int] = field(default_factory=dict)  # malformed rows, counted by reason


@dataclass(frozen=True)
class Continuation:
    """One sampled completion; `truncated`: max_new_tokens cut it before the model stopped."""

    text: str
    truncated: bool = False


Verifier = Callable[[str | None, str], bool]  # (extracted answer or None, gold answer) -> correct


class Task:
    """Base class with the plain-text format: `Question: ...` / `Answer:` then rationale + answer line.

    Subclasses override `load` and, where their format differs, the formatting methods.
    """

    name = "task"
    checks_steps = False  # True where `step_checks` judges a rationale's intermediate steps
    # task.chat_template: wraps each prompt as the user's turn of the tokenizer's chat template
    chat: Callable[[str], str] | None = None

    def __init__(self, verifier: Verifier, few_shot: int = 0):
        self.verifier = verifier
        self.few_shot = few_shot
        self._shots: list[Problem] = []

    def load(self) -> Splits:
        raise NotImplementedError

    def set_shots(self, train: list[Problem]) -> None:
        """Few-shot examples: the first `few_shot` training problems that have a gold target."""
        self._shots = [p for p in train if self.target(p) is not None][: self.few_shot]

    def question_text(self, problem: Problem, hint: str | None = None) -> str:
        return question_answer(problem.question, hint)

    def prompt(self, problem: Problem, hint: bool = False, few_shot: bool = True) -> str:
        """The text the model continues, after the few-shot exemplars unless `few_shot` is false.
        With `hint` the correct answer is shown (rationalization), in the exemplars too: each
        shows its hint and a rationale reaching it, as in STaR's rationalization prompts."""
        shots = (
            "".join(
                self.question_text(s, s.answer if hint else None) + self.target(s) + "\n\n"
                for s in self._shots
                if s.id != problem.id
            )
            if few_shot
            else ""
        )
        text = shots + self.question_text(problem, problem.answer if hint else None)
        return text if self.chat is None else self.chat(text)

    def completion(self, rationale: str, answer: str) -> str:
        return answer_line(rationale, answer)

    def target(self, problem: Problem) -> str | None:
        """The gold completion (rationale + answer), or None when the data has no rationale."""
        return None if problem.rationale is None else self.completion(problem.rationale, problem.answer)

    def extract(self, completion: str) -> str | None:
        """The answer a completion gives: its last non-empty line, minus an `The answer is` prefix."""
        return last_line_answer(completion)

    def trim(self, completion: str) -> str:
        """The part of a completion that answers this question (what is verified and kept): up to
        an invented next exemplar, which few-shot prompts invite the model to write."""
        return before_next_question(completion)

    def verify(self, completion: str, problem: Problem) -> tuple[str | None, bool]:
        answer = self.extract(completion)
        return answer, answer is not None and self.verifier(answer, problem.answer)

    def gold_records(self, splits: Splits) -> list[dict]:
        """(prompt, gold target) records of the training questions that have a target."""
        return [{"prompt": self.prompt(p), "completion": self.target(p)} for p in splits.train if self.target(p)]

    def seed_records(self, splits: Splits) -> list[dict]:
        """(prompt, completion) records to pre-train a base model on; default: `gold_records`."""
        return self.gold_records(splits)

    def step_checks(self, problem: Problem, completion: str) -> list[bool] | None:
        """Per intermediate step of the rationale, whether it is right; None where the task cannot tell."""
        return None

    def restates_question(self, problem: Problem, completion: str) -> bool | None:
        """Whether the rationale begins by restating the question as asked (judged from the question
        alone: no gold rationale); None where the task cannot tell."""
        return None

    def step_states(self) -> int | None:
        """M when the step checks are transitions of a tabular chain with M states per step, so
        RL-STaR's per-step d_hat can be read from them (zip_chain); None otherwise."""
        return None

    def chain_shape(self, problem: Problem) -> tuple[int, int] | None:
        """(M candidate next states per step, T steps) in RL-STaR's tabular view, if the task has one."""
        return None

    def tokenizer_options(self) -> dict:
        """Settings for the tokenizer trained on `texts` when tokenizer.path is unset."""
        return {"vocab_size": 512, "user_symbols": [], "byte_fallback": True, "split_digits": True}

    def texts(self, splits: Splits) -> list[str]:
        """Text a task tokenizer is trained on: every prompt (hinted too) and gold target."""
        out = []
        for p in splits.train + splits.test:
            out += [self.prompt(p), self.prompt(p, hint=True), self.target(p) or p.answer]
        return out


class MarkovChainTask(ABC):
    """A task whose answer is reached by `num_steps` state transitions that a policy can take one
    at a time, each from a prompt holding only the current state (the markov_chain rollout)."""

    num_steps: int

    @abstractmethod
    def step_prompt(self, state: str) -> str:
        """The prompt that asks for the state after `state`."""

    @abstractmethod
    def prompt_state(self, prompt: str) -> str:
        """The state a (question or step) prompt holds."""

    @abstractmethod
    def state_level(self, state: str) -> int | None:
        """Steps taken to reach `state`, or None for a malformed one."""


class InputTargetTask(Task):
    """The STaR paper's arithmetic layout: `Input:` question, optional `Hint:` answer, `Target:`."""

    def question_text(self, problem: Problem, hint: str | None = None) -> str:
        return input_target(problem.question, hint)


def input_target(question: str, hint: str | None = None) -> str:
    """`Input:` question, optional `Hint:` line, `Target:`; the text the model continues."""
    hint_line = f"Hint: {hint}\n" if hint is not None else ""
    return f"Input:\n{question}\n{hint_line}Target:\n"


# The plain layout as functions, shared by `Task` and the file tasks' `plain` format (tasks/formats.py).


def before_next_question(completion: str) -> str:
    """The completion up to a line starting `Question:` (the plain layout's next exemplar)."""
    head, sep, _ = completion.partition("\nQuestion:")
    return head.rstrip() if sep else completion


def question_answer(question: str, hint: str | None = None) -> str:
    """`Question:` line, optional `Hint: the answer is` line, `Answer:`; the text the model continues."""
    hint_line = f"Hint: the answer is {hint}\n" if hint is not None else ""
    return f"Question: {question}\n{hint_line}Answer:\n"


def answer_line(rationale: str, answer: str) -> str:
    """The plain completion: the rationale, then `The answer is ANSWER` on its own last line."""
    return f"{rationale}\nThe answer is {answer}" if rationale else f"The answer is {answer}"


def last_line_answer(completion: str) -> str | None:
    """A completion's last non-empty line, minus an `The answer is` / `Answer:` prefix and a final period."""
    lines = [line.strip() for line in completion.strip().splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    for prefix in ("The answer is", "the answer is", "Answer:"):
        if last.startswith(prefix):
            last = last[len(prefix) :].strip()
    return last.rstrip(".").strip() or None
