"""Built-in rollouts: `continuation` (one continuation of the prompt per sample) and
`markov_chain` (a chain of state transitions, one generation per step from a prompt holding only
the current state: RL-STaR's Markov policy; tasks that are a `MarkovChainTask`, e.g. zip_chain)."""

from __future__ import annotations

from starjax.errors import ConfigError
from starjax.registry import ROLLOUTS
from starjax.seeds import derive
from starjax.star.protocols import Context
from starjax.tasks.base import Continuation, MarkovChainTask


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def _first_line(text: str) -> str:
    lines = _lines(text)
    return lines[0] if lines else ""


@ROLLOUTS.register("continuation")
class Continuations:
    def __init__(self, ctx: Context):
        pass

    def complete(self, sampler, prompts: list[str], seed: int, temperature: float, num_samples: int) -> list[list[Continuation]]:
        rows = sampler.generate(prompts, seed, temperature=temperature, num_samples=num_samples)
        return [[Continuation(c.text, c.finish == "length") for c in row] for row in rows]

    def training_records(self, records: list[dict]) -> list[dict]:
        return records


@ROLLOUTS.register("markov_chain")
class MarkovChain(Continuations):
    def __init__(self, ctx: Context):
        if not isinstance(ctx.task, MarkovChainTask):
            raise ConfigError(f"star.rollout=markov_chain needs a task of state transitions (zip_chain), not {ctx.task.name!r}")
        self.task: MarkovChainTask = ctx.task

    def complete(self, sampler, prompts: list[str], seed: int, temperature: float, num_samples: int) -> list[list[Continuation]]:
        """T rounds, each sampling the next state from a prompt that holds only the current one."""
        first = super().complete(sampler, prompts, seed, temperature, num_samples)
        chains = [[c] for row in first for c in row]
        for t in range(1, self.task.num_steps):
            # a malformed state ends its chain (every later step is wrong anyway)
            live = [c for c in chains if self.task.state_level(_first_line(c[-1].text)) == t]
            step_prompts = [self.task.step_prompt(_first_line(c[-1].text)) for c in live]
            nxt = super().complete(sampler, step_prompts, derive(seed, "step", t), temperature, 1) if live else []
            for chain, row in zip(live, nxt):
                chain.append(row[0])
        # a step cut before its state line ended leaves the chain unfinished
        joined = [
            Continuation(
                "\n".join(_first_line(c.text) for c in chain), any(c.truncated and "\n" not in c.text.lstrip() for c in chain)
            )
            for chain in chains
        ]
        return [joined[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]

    def training_records(self, records: list[dict]) -> list[dict]:
        """Each chain becomes T one-step records (previous state -> next state)."""
        out = []
        for r in records:
            states = [self.task.prompt_state(r["prompt"]), *_lines(r["completion"])]
            out += [{**r, "prompt": self.task.step_prompt(a), "completion": b} for a, b in zip(states, states[1:])]
        return out
