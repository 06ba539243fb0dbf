"""RL-STaR's synthetic chain of thought: zip two k-bit binary numbers, one digit pair per step.

    a = 101, b = 011:   x101.011  ->  x10.01y11  ->  x1.0y01.11  ->  x.y10.01.11

A state is "x" + the digits of a not yet moved + "." + those of b, then, once a pair has moved,
"y" + the moved pairs newest first, "."-separated. Step t moves the last remaining digit of a and
of b, as a pair, to the front of the part after "y"; after T = k steps the state is the answer.

The tabular view (Chang et al., arXiv 2410.23912): level t has M = 4^k states, one per (a, b)
pair, and the correct step keeps the pair. The noisy kernel of the seed data takes the correct
next state with probability d_t and otherwise a uniformly random level-t state (of any pair), so
the correct one has probability (1 + (M-1) d_t) / M, exactly the model in `starjax.theory`.

Format: prompt `Input:\\nx101.011\\nTarget:\\n`, completion s_1..s_T one per line (the answer s_T
last). Every pair is a problem; train = test = all pairs unless `test_fraction` > 0. With the
markov_chain rollout the policy is asked one step at a time (prompt `Input:\\n<s_t-1>\\nTarget:\\n`,
completion s_t) and the T answers are joined into the same completion format.
difficulty is "": every problem has the same T steps and, in the tabular model, the same odds.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import List

from starjax.errors import ConfigError
from starjax.registry import TASKS
from starjax.tasks.base import InputTargetTask, MarkovChainTask, Problem, Splits, input_target
from starjax.tasks.synthetic import load_synthetic, register
from starjax.tasks.verifiers import exact

_QUESTION = re.compile(r"Input:\n(.*)\n")
_STATE = re.compile(r"x([01]*)\.([01]*)(?:y([01]{2}(?:\.[01]{2})*))?")


def start_state(a: str, b: str) -> str:
    return f"x{a}.{b}"


def level_state(a: str, b: str, t: int) -> str:
    """The state of pair (a, b) after t correct steps."""
    k = len(a)
    pairs = [a[i] + b[i] for i in range(k - 1, k - 1 - t, -1)][::-1]  # newest (leftmost digit) first
    return f"x{a[: k - t]}.{b[: k - t]}" + ("y" + ".".join(pairs) if pairs else "")


def parse_state(state: str, bits: int) -> tuple[str, str, list[str]] | None:
    """(a digits left, b digits left, moved pairs newest first) of a well-formed k-bit state, else None."""
    m = _STATE.fullmatch(state.strip())
    if m is None:
        return None
    a, b, moved = m.group(1), m.group(2), m.group(3)
    pairs = moved.split(".") if moved else []
    if len(a) != len(b) or len(a) + len(pairs) != bits:
        return None
    return a, b, pairs


def step(state: str, bits: int) -> str | None:
    """The kernel: the correct next state, or None for a malformed or final state."""
    parsed = parse_state(state, bits)
    if parsed is None or not parsed[0]:
        return None
    a, b, pairs = parsed
    return f"x{a[:-1]}.{b[:-1]}y" + ".".join([a[-1] + b[-1], *pairs])


def level(state: str, bits: int) -> int | None:
    """Steps taken to reach a well-formed state (pairs moved), or None."""
    parsed = parse_state(state, bits)
    return None if parsed is None else len(parsed[2])


def pairs_of(bits: int) -> list[tuple[str, str]]:
    """All 4^bits (a, b) pairs, a-major."""
    numbers = [format(i, f"0{bits}b") for i in range(2**bits)]
    return [(a, b) for a in numbers for b in numbers]


def completion_lines(completion: str) -> list[str]:
    return [line.strip() for line in completion.strip().splitlines() if line.strip()]


def step_checks(problem: Problem, completion: str, bits: int) -> list[bool]:
    """Per step t = 1..T: is generated state t exactly the kernel applied to state t-1 (state 0 =
    the question)? A missing or malformed state (or one at the wrong level) is wrong, and so is
    every step after it. Lines after the T-th are not steps (they make the extracted answer wrong)."""
    lines = completion_lines(completion)
    checks, prev = [], problem.question
    for t in range(1, bits + 1):
        state = lines[t - 1] if t - 1 < len(lines) else None
        if prev is None or state is None or level(state, bits) != t:
            prev = None  # malformed or missing: this step and all later ones are wrong
            checks.append(False)
            continue
        checks.append(state == step(prev, bits))
        prev = state
    return checks


def sample_trajectory(a: str, b: str, deltas: list[float], rng: random.Random) -> list[str]:
    """States s_1..s_T from the noisy kernel: keep the pair w.p. d_t, else jump to a uniform pair."""
    bits = len(a)
    states = []
    for t in range(1, bits + 1):
        if rng.random() >= deltas[t - 1]:
            a = format(rng.randrange(2**bits), f"0{bits}b")
            b = format(rng.randrange(2**bits), f"0{bits}b")
        states.append(level_state(a, b, t))
    return states


def make_problem(a: str, b: str) -> Problem:
    states = [level_state(a, b, t) for t in range(1, len(a) + 1)]
    return Problem(f"{a}.{b}", start_state(a, b), states[-1], "", "\n".join(states[:-1]))


def generate(split: str, params: dict):
    """Every pair in train; test = train, or (test_fraction > 0) a seeded held-out share of the pairs."""
    problems = [make_problem(a, b) for a, b in pairs_of(params["bits"])]
    fraction = params["test_fraction"]
    if fraction == 0:
        yield from problems
        return
    n_test = min(len(problems) - 1, max(1, round(fraction * len(problems))))
    test = set(random.Random(f"{params['seed']}-zip_chain").sample(range(len(problems)), n_test))
    yield from (p for i, p in enumerate(problems) if (i in test) == (split == "test"))


register("zip_chain", generate)


@dataclass(frozen=True)
class ZipChainConfig:
    # Two numbers of `bits` binary digits; one digit pair moves per step, so T = bits steps.
    bits: int = 3
    # Base-model seed data: trajectories sampled from the noisy kernel (correct step w.p.
    # (1 + (M-1) d_t) / M), `seed_per_question` per question; one delta, or one per step.
    seed_delta: List[float] = field(default_factory=lambda: [0.2])
    seed_per_question: int = 64
    # Train = test = all 4^bits pairs (as in RL-STaR) unless test_fraction > 0.
    test_fraction: float = 0.0
    # (star.rollout=markov_chain shows the policy only the current state at each step, as in the
    # tabular model; the default rollout writes the whole chain in one completion, docs/rlstar.md)

    def check(self, cfg) -> None:
        if not 1 <= self.bits <= 8 or not self.seed_delta or any(not 0 <= d <= 1 for d in self.seed_delta):
            raise ConfigError("task.zip_chain needs 1 <= bits <= 8 and seed_delta values in [0, 1]")
        if len(self.seed_delta) not in (1, self.bits):
            raise ConfigError(
                f"task.zip_chain.seed_delta has {len(self.seed_delta)} values; give one, or one per step ({self.bits})"
            )
        if not 0 <= self.test_fraction < 1 or self.seed_per_question < 1:
            raise ConfigError("task.zip_chain needs 0 <= test_fraction < 1 (0: test = train) and seed_per_question >= 1")


@TASKS.register("zip_chain", config=ZipChainConfig)
class ZipChain(InputTargetTask, MarkovChainTask):
    name = "zip_chain"
    checks_steps = True

    @classmethod
    def from_config(cls, run) -> "ZipChain":
        return cls(run.task.zip_chain, run.task.data_dir, run.seed)

    def __init__(self, cfg: ZipChainConfig, data_dir: str, seed: int):
        super().__init__(exact, few_shot=0)
        self.cfg, self.data_dir, self.seed = cfg, data_dir, seed
        self.num_steps = cfg.bits  # T
        self.num_states = 4**cfg.bits  # M: states per level, one per pair
        self.deltas = list(cfg.seed_delta) * (cfg.bits if len(cfg.seed_delta) == 1 else 1)

    def load(self) -> Splits:
        c = self.cfg
        params = dict(bits=c.bits, test_fraction=c.test_fraction)
        if c.test_fraction > 0:  # the seed only matters for the held-out choice; keep one dataset otherwise
            params["seed"] = self.seed
        s = load_synthetic("zip_chain", params, self.data_dir)
        return Splits(s["train"], s["test"])

    def completion(self, rationale: str, answer: str) -> str:
        return f"{rationale}\n{answer}" if rationale else answer

    def target(self, problem: Problem) -> str:
        return self.completion(problem.rationale or "", problem.answer)  # T = 1 has no rationale lines

    def extract(self, completion: str) -> str | None:
        lines = completion_lines(completion)
        return lines[-1] if lines else None

    def chain_shape(self, problem: Problem) -> tuple[int, int]:
        return self.num_states, self.num_steps

    def tokenizer_options(self) -> dict:
        return {"vocab_size": 32, "user_symbols": [], "byte_fallback": False, "split_digits": True}

    def step_prompt(self, state: str) -> str:
        return input_target(state)

    def prompt_state(self, prompt: str) -> str:
        return _QUESTION.search(prompt).group(1)

    def state_level(self, state: str) -> int | None:
        return level(state, self.num_steps)

    def step_states(self) -> int:
        return self.num_states

    def step_checks(self, problem: Problem, completion: str) -> list[bool]:
        return step_checks(problem, completion, self.num_steps)

    def seed_records(self, splits: Splits) -> list[dict]:
        """`seed_per_question` noisy-kernel trajectories per training question, wrong ones included."""
        rng = random.Random(f"{self.seed}-zip_chain-seed")
        out = []
        for p in splits.train:
            a, b = p.id.split(".")  # ids are "a.b" (make_problem)
            prompt = self.prompt(p)
            for _ in range(self.cfg.seed_per_question):
                out.append({"prompt": prompt, "completion": "\n".join(sample_trajectory(a, b, self.deltas, rng))})
        return out
