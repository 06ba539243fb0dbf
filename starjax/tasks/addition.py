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

from starjax.tasks.base import Problem, Splits, Task
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


class Addition(Task):
    name = "addition"

    def __init__(self, cfg, data_dir: str, seed: int):
        super().__init__(numeric, few_shot=0)
        self.cfg, self.data_dir, self.seed = cfg, data_dir, seed

    def load(self) -> Splits:
        c = self.cfg
        params = dict(seed=self.seed, min_digits=c.min_digits, max_digits=c.max_digits,
                      train_size=c.train_size, test_size=c.test_size)
        s = load_synthetic("addition", params, self.data_dir)
        return Splits(s["train"], s["test"])

    def question_text(self, problem: Problem, hint: str | None = None) -> str:
        hint_line = f"Hint: {hint}\n" if hint is not None else ""
        return f"Input:\n{problem.question}\n{hint_line}Target:\n"

    def completion(self, rationale: str, answer: str) -> str:
        return f"{rationale}\n{answer}"

    def extract(self, completion: str) -> str | None:
        after = completion.split("</scratch>")[-1]
        lines = [line.strip() for line in after.strip().splitlines() if line.strip()]
        return lines[0] if lines and all(part.isdigit() for part in lines[0].split()) else None

    def seed_records(self, splits: Splits) -> list[dict]:
        """Base-model data: full scratchpads for the easy problems (<= seed_max_digits), with and
        without hints, so the base can do short additions and knows the hint format, but has
        only seen a few longer ones."""
        c = self.cfg
        rng = random.Random(f"{self.seed}-addition-seed")
        out = []
        for i in range(c.seed_size):
            n = rng.randint(1, c.seed_max_digits) if rng.random() >= c.seed_long_fraction else c.seed_max_digits + 1
            lo = 0 if n == 1 else 10 ** (n - 1)
            p = make_problem(f"seed-{i}", rng.randint(lo, 10**n - 1), rng.randint(lo, 10**n - 1))
            out.append({"prompt": self.prompt(p, hint=rng.random() < c.seed_hint_fraction), "completion": self.target(p)})
        return out
