"""(prompt, completion) examples -> packed fixed-length rows -> global batches.

The order is a pure function of (seed, epoch): each epoch shuffles the examples with a key
derived from both and packs them greedily in that order. The batch for a global step is found
from the step alone, so resuming needs the step, not an iterator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import jax
import numpy as np

from starjax.sharding import AxisRules
from starjax.tokenizer import Tokenizer
from starjax.training.step import ROW_NAMES, Batch


@dataclass(frozen=True)
class Example:
    prompt: tuple[int, ...]  # bos + prompt tokens
    completion: tuple[int, ...]  # completion tokens + eos: the only tokens with loss

    def __len__(self) -> int:  # model inputs: every token but the last
        return len(self.prompt) + len(self.completion) - 1


def tokenize_records(records: Iterable[Mapping], tokenizer: Tokenizer, seq_len: int) -> tuple[list[Example], dict[str, int]]:
    """Examples from {"prompt", "completion"} records; bad records are skipped and counted by reason."""
    examples, skipped = [], {"missing field": 0, "empty completion": 0, "too long": 0}
    for r in records:
        prompt, completion = (r.get("prompt"), r.get("completion")) if isinstance(r, Mapping) else (None, None)
        if not isinstance(prompt, str) or not isinstance(completion, str):
            skipped["missing field"] += 1
            continue
        if not completion.strip():
            skipped["empty completion"] += 1
            continue
        ex = Example(tuple(tokenizer.encode(prompt, add_bos=True)), tuple(tokenizer.encode(completion, add_eos=True)))
        if len(ex) > seq_len:
            skipped["too long"] += 1
            continue
        examples.append(ex)
    return examples, skipped


def pack(examples: list[Example], seq_len: int) -> dict[str, np.ndarray]:
    """Greedy packing in order: a new row starts when the next example does not fit."""
    rows: list[list[Example]] = []
    used = seq_len
    for ex in examples:
        if used + len(ex) > seq_len:
            rows.append([])
            used = 0
        rows[-1].append(ex)
        used += len(ex)
    shape = (len(rows), seq_len)
    out = {k: np.zeros(shape, np.int32) for k in ("tokens", "targets", "positions", "segment_ids")}
    out["weights"] = np.zeros(shape, np.float32)
    for r, row in enumerate(rows):
        at = 0
        for seg, ex in enumerate(row, start=1):
            seq = np.asarray(ex.prompt + ex.completion, np.int32)
            n = len(seq) - 1
            out["tokens"][r, at : at + n] = seq[:-1]
            out["targets"][r, at : at + n] = seq[1:]
            out["positions"][r, at : at + n] = np.arange(n)
            out["segment_ids"][r, at : at + n] = seg
            # target i is seq[i + 1]: a completion token when i + 1 >= len(prompt)
            out["weights"][r, at + len(ex.prompt) - 1 : at + n] = 1.0
            at += n
    return out


class PackedData:
    """Global batches of `batch_size` packed rows, as a function of the step."""

    def __init__(self, examples: list[Example], seq_len: int, batch_size: int, seed: int):
        if not examples:
            raise ValueError("no usable training examples")
        self.examples, self.seq_len, self.batch_size, self.seed = examples, seq_len, batch_size, seed
        self._steps: dict[int, int] = {}
        self._packed: dict[int, dict[str, np.ndarray]] = {}
        if self.steps_in_epoch(0) == 0:
            raise ValueError(
                f"{len(examples)} examples pack into {len(self._epoch(0)['tokens'])} rows, fewer than "
                f"train.batch_size={batch_size}; lower the batch size or add data"
            )

    def _epoch(self, epoch: int) -> dict[str, np.ndarray]:
        # the packed rows of the two epochs seen last: a step reads the current one, rarely the one before
        if epoch not in self._packed:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
            self._packed = {**dict(list(self._packed.items())[-1:]), epoch: pack([self.examples[i] for i in order], self.seq_len)}
        return self._packed[epoch]

    def steps_in_epoch(self, epoch: int) -> int:
        # Kept for every epoch seen: `position` walks all earlier epochs on every step, and
        # re-packing them (the packed rows themselves are cached for two epochs only) made long
        # runs slower with every epoch.
        if epoch not in self._steps:
            self._steps[epoch] = len(self._epoch(epoch)["tokens"]) // self.batch_size
        return self._steps[epoch]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, step within the epoch) of a global step; the last partial batch is dropped."""
        epoch = 0
        while step >= self.steps_in_epoch(epoch):
            step -= self.steps_in_epoch(epoch)
            epoch += 1
        return epoch, step

    def host_batch(self, step: int) -> dict[str, np.ndarray]:
        epoch, i = self.position(step)
        rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return {k: v[rows] for k, v in self._epoch(epoch).items()}


def device_batch(host: dict[str, np.ndarray], rules: AxisRules) -> Batch:
    """The global batch as sharded arrays; each process contributes only its own rows."""
    sharding = rules.sharding(ROW_NAMES)
    n, p, i = len(host["tokens"]), jax.process_count(), jax.process_index()
    local = slice(i * n // p, (i + 1) * n // p)
    arrays = {k: jax.make_array_from_process_local_data(sharding, v[local], v.shape) for k, v in host.items()}
    return Batch(**arrays)
