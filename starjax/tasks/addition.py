"""n-digit addition with the STaR paper's scratchpad (digits space-separated):

    Input:
    9 6 4 + 4 9 4
    Target:
    <scratch>
    9 6 4 + 4 9 4 , C: 0
    6 + 9 , 8 C: 0
    9 + 4 , 5 8 C: 1
    , 4 5 8 C: 1
    1 4 5 8
    </scratch>
    1 4 5 8

Each scratch line shows the next digit pair, the result digits so far and the carry. Both
operands have exactly n digits; difficulty = n.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

from starjax.errors import ConfigError
from starjax.registry import TASKS
from starjax.tasks.base import InputTargetTask, Problem, Splits
from starjax.tasks.synthetic import load_synthetic, register
from starjax.tasks.verifiers import numeric


def spaced(n: int | str) -> str:
    return " ".join(str(n))


def scratchpad(a: int, b: int) -> str:
    """The rationale for a + b (operands of equal length)."""
    da, db = str(a)[::-1], str(b)[::-1]
    lines = [f"{spaced(a)} + {spaced(b)} , C: 0"]
    result, carry = "", 0
    for i in range(len(da)):
        s = int(da[i]) + int(db[i]) + carry
        result, carry = str(s % 10) + result, s // 10
        pair = f"{da[i + 1]} + {db[i + 1]} " if i + 1 < len(da) else ""
        lines.append(f"{pair}, {spaced(result)} C: {carry}")
    lines.append(f"{carry} {spaced(result)}")
    return "<scratch>\n" + "\n".join(lines) + "\n</scratch>"


def _true_lines(question: str) -> list[str]:
    """The true scratchpad's lines for `question` ("a + b"): the operands line, n steps, the final line."""
    a, b = (int(x.replace(" ", "")) for x in question.split("+"))
    return scratchpad(a, b).splitlines()[1:-1]


def _scratch_lines(completion: str) -> list[str]:
    """A completion's scratch lines, stripped, before </scratch>."""
    scratch = completion.partition("</scratch>")[0]
    return [line.strip() for line in scratch.splitlines() if line.strip() not in ("", "<scratch>")]


def restates_operands(question: str, completion: str) -> bool:
    """Whether the scratchpad's first line is the operands line of `question` ("a + b"), the line
    every later step reads its digits from."""
    return _scratch_lines(completion)[:1] == _true_lines(question)[:1]


def _digits_line(text: str) -> str | None:
    """The first non-empty line of `text` if it is space-separated digits."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines and all(part.isdigit() for part in lines[0].split()) else None


def make_problem(uid: str, a: int, b: int) -> Problem:
    return Problem(uid, f"{spaced(a)} + {spaced(b)}", spaced(a + b), str(len(str(a))), scratchpad(a, b))


def generate(split: str, params: dict):
    """`size` distinct problems per split, digits uniform in [min_digits, max_digits] (among lengths
    with pairs left); no problem repeats, so test never repeats train. Config validation ensures
    there are enough distinct problems."""
    rng = random.Random(f"{params['seed']}-addition")
    seen: set[tuple[int, int]] = set()
    out: dict[str, list[Problem]] = {"train": [], "test": []}
    for name in ("train", "test"):  # train first, so test can exclude it whatever split is asked for
        while len(out[name]) < params[f"{name}_size"]:
            n = rng.randint(params["min_digits"], params["max_digits"])
            lo = 0 if n == 1 else 10 ** (n - 1)
            a, b = rng.randint(lo, 10**n - 1), rng.randint(lo, 10**n - 1)
            if (a, b) in seen:
                continue
            seen.add((a, b))
            out[name].append(make_problem(f"{name}-{len(out[name])}", a, b))
    yield from out[split]


register("addition", generate)


@dataclass(frozen=True)
class AdditionConfig:
    min_digits: int = 1
    max_digits: int = 5
    train_size: int = 1000
    test_size: int = 200
    # Base-model seed data: scratchpads of up to seed_max_digits digits, a seed_long_fraction of
    # them longer (up to max_digits; each longer length seed_long_decay times as likely as the
    # one before: 1 = uniform), a seed_hint_fraction of all with the answer as a hint.
    seed_size: int = 4000
    seed_max_digits: int = 2
    seed_long_fraction: float = 0.02
    seed_long_decay: float = 1.0
    # The longest seed sums (null: max_digits); below max_digits the base never sees the longest.
    seed_long_max_digits: Optional[int] = None
    seed_hint_fraction: float = 0.3

    def check(self, cfg) -> None:
        if not 1 <= self.min_digits <= self.max_digits or self.train_size < 1 or self.test_size < 1 or self.seed_max_digits < 1:
            raise ConfigError("task.addition needs 1 <= min_digits <= max_digits, seed_max_digits >= 1 and positive sizes")
        if not 0 < self.seed_long_decay <= 1:
            raise ConfigError(f"task.addition.seed_long_decay={self.seed_long_decay} must be in (0, 1] (1: longer sums uniform)")
        top = self.seed_long_max_digits
        if top is not None and not self.seed_max_digits < top <= self.max_digits:
            raise ConfigError(
                f"task.addition.seed_long_max_digits={top} must be above seed_max_digits="
                f"{self.seed_max_digits} and at most max_digits={self.max_digits} (or null: max_digits)"
            )
        pool = sum((10 if n == 1 else 9 * 10 ** (n - 1)) ** 2 for n in range(self.min_digits, self.max_digits + 1))
        if self.train_size + self.test_size > pool:
            raise ConfigError(
                f"task.addition: {self.min_digits}-{self.max_digits} digits give only {pool} distinct problems, fewer than "
                f"train_size + test_size = {self.train_size + self.test_size}; raise max_digits or lower the sizes"
            )


@TASKS.register("addition", config=AdditionConfig)
class Addition(InputTargetTask):
    name = "addition"
    checks_steps = True

    def __init__(self, cfg: AdditionConfig, data_dir: str, seed: int):
        super().__init__(numeric, few_shot=0)
        self.cfg, self.data_dir, self.seed = cfg, data_dir, seed

    @classmethod
    def from_config(cls, run) -> "Addition":
        return cls(run.task.addition, run.task.data_dir, run.seed)

    def load(self) -> Splits:
        c = self.cfg
        params = dict(
            seed=self.seed, min_digits=c.min_digits, max_digits=c.max_digits, train_size=c.train_size, test_size=c.test_size
        )
        s = load_synthetic("addition", params, self.data_dir)
        return Splits(s["train"], s["test"])

    def completion(self, rationale: str, answer: str) -> str:
        return f"{rationale}\n{answer}"

    def extract(self, completion: str) -> str | None:
        """The answer after </scratch>, if it is the number the scratchpad's last line computed;
        an answer the rationale does not support (e.g. a copied hint) counts as no answer."""
        scratch, sep, after = completion.partition("</scratch>")
        answer = _digits_line(after)
        lines = [line for line in scratch.strip().splitlines() if line.strip()]
        result = _digits_line(lines[-1]) if sep and lines else None
        if answer is None or result is None or int(answer.replace(" ", "")) != int(result.replace(" ", "")):
            return None
        return answer

    def step_checks(self, problem: Problem, completion: str) -> list[bool]:
        """Per scratch step (the n digit lines and the final carry line): is it the line the true
        computation writes? Miscopied operands on the first line fail every step; lines past the
        last step fail it."""
        want, got = _true_lines(problem.question), _scratch_lines(completion)
        copied = got[:1] == want[:1]
        checks = [copied and i < len(got) and got[i] == want[i] for i in range(1, len(want))]
        checks[-1] = checks[-1] and len(got) == len(want)
        return checks

    def restates_question(self, problem: Problem, completion: str) -> bool:
        return restates_operands(problem.question, completion)

    def chain_shape(self, problem: Problem) -> tuple[int, int]:
        # one step per scratch line (n digits + the final carry). A wrong digit is never undone
        # later, so the candidates are the whole answer space, not the 10 digits of a step: in the
        # tabular model errors would otherwise cancel out with probability 1/10.
        n = int(problem.difficulty)
        return 10 ** (n + 1), n + 1

    def tokenizer_options(self) -> dict:
        # digits are space-separated already: "▁7" pieces keep one digit per token at half the length
        return {"vocab_size": 64, "user_symbols": ["<scratch>", "</scratch>"], "byte_fallback": False, "split_digits": False}

    def seed_records(self, splits: Splits) -> list[dict]:
        """Base-model data: full scratchpads, mostly for easy sums (<= seed_max_digits digits), a
        `seed_long_fraction` over the longer lengths up to `seed_long_max_digits` (default
        max_digits; each `seed_long_decay` times as likely as the one before), and a
        `seed_hint_fraction` of all of them shown with the answer as a hint: the base can do short sums, has seen longer ones and the
        hint, and rarely gets the longest right."""
        c = self.cfg
        rng = random.Random(f"{self.seed}-addition-seed")
        top = c.max_digits if c.seed_long_max_digits is None else c.seed_long_max_digits
        longer = list(range(c.seed_max_digits + 1, max(top, c.seed_max_digits + 1) + 1))
        weights = [c.seed_long_decay**i for i in range(len(longer))]
        out = []
        for i in range(c.seed_size):
            if rng.random() >= c.seed_long_fraction:
                n = rng.randint(1, c.seed_max_digits)
            elif c.seed_long_decay == 1:  # uniform, drawn as earlier versions drew it: their seed data unchanged
                n = rng.randint(longer[0], longer[-1])
            else:
                n = rng.choices(longer, weights)[0]
            lo = 0 if n == 1 else 10 ** (n - 1)
            p = make_problem(f"seed-{i}", rng.randint(lo, 10**n - 1), rng.randint(lo, 10**n - 1))
            hint = rng.random() < c.seed_hint_fraction
            out.append({"prompt": self.prompt(p, hint=hint), "completion": self.target(p)})
        return out
