"""The host side of continuous batching: a queue of prompts, a pool of slots, harvest and refill.

The device holds the slots (`continuous.Slots`); the host only decides which prompts go into
which free slots and reads back finished rows between two compiled decode runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import numpy as np

from starjax import multihost
from starjax.sampling.strategies import SamplingSettings

# A shared prefix shorter than this is prefilled with each prompt: too short to pay for its own pass.
MIN_SHARED_PREFIX = 32
PREFIX_GRANULE = 16  # the shared prefix is cut to a multiple of this, so few lengths compile


@dataclass(frozen=True)
class Row:
    tokens: np.ndarray  # generated ids, a stop token included
    logprobs: np.ndarray


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt starts with, leaving each at least one of its own, cut to the granule;
    0 when that is under MIN_SHARED_PREFIX."""
    shortest = min(len(p) for p in prompts)
    first = np.asarray(prompts[0][:shortest])
    common = shortest - 1
    for p in prompts[1:]:
        same = np.asarray(p[:common]) == first[:common]
        common = int(np.argmin(same)) if not same.all() else common
        if common < MIN_SHARED_PREFIX:
            return 0
    common -= common % PREFIX_GRANULE
    return common if common >= MIN_SHARED_PREFIX else 0


def run_queue(
    programs: dict[str, Callable],
    params,
    rules,
    prompts: Sequence[Sequence[int]],
    limits: np.ndarray,
    buckets: Sequence[int],
    *,
    seed: int,
    slots: int,
    group: int,
    num_samples: int,
    cap: int,
    pad_id: int,
    settings: SamplingSettings,
    on_prompt_done: Callable[[int], None],
) -> list[list[Row]]:
    """num_samples rows per prompt, in input order; `group` prompts go into free slots at a time."""
    replicated = rules.sharding(())
    put = lambda x: multihost.global_array(np.asarray(x), replicated)  # noqa: E731
    lp = shared_prefix_length(prompts)
    prefix = None
    if lp:
        prefix = programs["prefix"](params, put(np.asarray(prompts[0][:lp], np.int32)[None]))
    rests = [p[lp:] for p in prompts]
    bucket_of = [next(b for b in buckets if b >= len(r)) for r in rests]
    length = max(bucket_of) + cap

    # Groups of prompts of one bucket, shortest first (as the fixed path orders them).
    order = sorted(range(len(prompts)), key=lambda i: (bucket_of[i], i))
    queue: deque[list[int]] = deque()
    for i in order:
        if not queue or len(queue[-1]) == group or bucket_of[queue[-1][0]] != bucket_of[i]:
            queue.append([])
        queue[-1].append(i)

    state = programs["init"](slots, length, cap)
    seed_key = put(jax.random.key_data(jax.random.key(seed)))
    owner = np.full((slots,), -1, np.int64)  # row id (prompt * num_samples + sample) in each slot
    free = list(range(slots))
    results: list[list[Row | None]] = [[None] * num_samples for _ in prompts]
    remaining = np.full((len(prompts),), num_samples)
    need = group * num_samples  # rows of one refill call
    while True:
        while queue and len(free) >= len(queue[0]) * num_samples:
            members = queue.popleft()
            bs = bucket_of[members[0]]
            tokens = np.full((group, bs), pad_id, np.int32)
            lengths = np.zeros((group,), np.int32)
            ids = np.zeros((group,), np.int32)
            row_limits = np.ones((group, num_samples), np.int32)
            for r, i in enumerate(members):
                tokens[r, bs - len(rests[i]) :] = rests[i]
                lengths[r], ids[r], row_limits[r] = len(rests[i]), i, limits[i]
            targets = np.full((need,), slots, np.int32)  # past the last slot: written nowhere
            taken, free = free[: len(members) * num_samples], free[len(members) * num_samples :]
            targets[: len(taken)] = taken
            owner[taken] = [i * num_samples + s for i in members for s in range(num_samples)]
            state = programs["refill"](
                params, state, prefix, put(tokens), put(lengths), put(row_limits), put(ids), put(targets), seed_key, settings
            )
        if len(free) == slots:
            break
        # Run until the next group fits (all rows done once nothing is queued).
        target = len(queue[0]) * num_samples if queue else slots
        state = programs["decode"](params, state, prefix, put(np.int32(target)), settings)
        tokens, logprobs, lengths, done = multihost.to_host((state.tokens, state.logprobs, state.lengths, state.done))
        for slot in np.flatnonzero(done & (owner >= 0)):
            prompt, sample = divmod(int(owner[slot]), num_samples)
            n = int(lengths[slot])
            results[prompt][sample] = Row(tokens[slot, :n].copy(), logprobs[slot, :n].copy())
            owner[slot] = -1
            free.append(int(slot))
            remaining[prompt] -= 1
            if remaining[prompt] == 0:
                on_prompt_done(1)
    return results  # type: ignore[return-value]
