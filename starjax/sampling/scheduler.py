"""The host side of continuous batching: a queue of prompts, a pool of slots, harvest and refill.

The device holds the slots (`continuous.Slots`) and refills them inside its decode loop; the host
orders the prompts into groups, stages a batch of groups per call and reads back the rows that
finished during it.
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


def bucket_groups(bucket_of: Sequence[int], group: int) -> list[list[int]]:
    """Prompt indices in groups of at most `group`, each of one prompt bucket, shortest bucket
    first (as the fixed path orders them)."""
    groups: list[list[int]] = []
    for i in sorted(range(len(bucket_of)), key=lambda i: (bucket_of[i], i)):
        if not groups or len(groups[-1]) == group or bucket_of[groups[-1][0]] != bucket_of[i]:
            groups.append([])
        groups[-1].append(i)
    return groups


# A call stages groups for about this many times the slots' rows: few host round trips, and a
# progress bar that still moves.
STAGED_TURNOVERS = 4


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

    queue = deque(bucket_groups(bucket_of, group))

    k = num_samples
    need = group * k  # rows of one group
    per_call = max(1, STAGED_TURNOVERS * slots // need)
    state = programs["init"](slots, length, cap)
    seed_key = put(jax.random.key_data(jax.random.key(seed)))
    slot_row = np.full((slots,), -1, np.int64)  # row id (prompt * num_samples + sample) in each slot
    results: list[list[Row | None]] = [[None] * k for _ in prompts]
    remaining = np.full((len(prompts),), k)
    while queue:
        # Stage the next groups of one bucket; the last call also runs every row to its end.
        bs = bucket_of[queue[0][0]]
        staged: list[list[int]] = []
        while queue and len(staged) < per_call and bucket_of[queue[0][0]] == bs:
            staged.append(queue.popleft())
        tokens = np.full((per_call, group, bs), pad_id, np.int32)
        lengths = np.zeros((per_call, group), np.int32)
        ids = np.zeros((per_call, group), np.int32)
        row_limits = np.ones((per_call, group, k), np.int32)
        place_row = np.full((slots + per_call * need,), -1, np.int64)  # the harvest's places
        place_row[:slots] = slot_row
        for q, members in enumerate(staged):
            for r, i in enumerate(members):
                tokens[q, r, bs - len(rests[i]) :] = rests[i]
                lengths[q, r], ids[q, r], row_limits[q, r] = len(rests[i]), i, limits[i]
                at = slots + q * need + r * k
                place_row[at : at + k] = i * k + np.arange(k)
        busy = multihost.global_array(slot_row >= 0, rules.sharding(("batch",)))
        args = (put(tokens), put(lengths), put(row_limits), put(ids), put(np.int32(len(staged))))
        state, owner, harvest = programs["run"](params, state, busy, prefix, *args, seed_key, settings, put(not queue))
        owner, tokens, logprobs, ends = multihost.to_host((owner, harvest.tokens, harvest.logprobs, harvest.lengths))
        slot_row = np.where(owner >= 0, place_row[owner], -1)
        for place in np.flatnonzero(ends):
            prompt, sample = divmod(int(place_row[place]), k)
            n = int(ends[place])
            results[prompt][sample] = Row(tokens[place, :n].copy(), logprobs[place, :n].copy())
            remaining[prompt] -= 1
            if remaining[prompt] == 0:
                on_prompt_done(1)
    return results  # type: ignore[return-value]
