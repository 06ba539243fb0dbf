"""Built-in synthetic tasks are TFDS dataset builders: generated locally, versioned, written as
array_record and read back with `as_data_source` (no TensorFlow). Reading other TFDS datasets is in tfds.py.

A builder config is named by a hash of the examples its generator writes: the generator runs
in memory first (it is cheap), so changed parameters or changed generator code always prepare a
new dataset, and a cache that an older starjax filled under the same parameters is never read.
Each builder's VERSION still follows its output (tests/test_tasks.py holds the hash of each
version's examples), so that datasets read elsewhere by version stay what they say.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Iterator

import tensorflow_datasets as tfds

from starjax.tasks.base import Problem

FIELDS = ("id", "question", "answer", "difficulty", "rationale")
SPLITS = ("train", "test")
Generator = Callable[[str, dict], Iterator[Problem]]  # (split, params) -> problems
_GENERATORS: dict[str, Generator] = {}


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    params_json: str = "{}"


class _Synthetic(tfds.core.GeneratorBasedBuilder):
    task = ""

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"starjax synthetic task {self.task!r}, generated locally",
            features=tfds.features.FeaturesDict({k: text for k in FIELDS}),
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split: str):
        params = json.loads(self.builder_config.params_json)
        for p in _GENERATORS[self.task](split, params):
            yield (
                p.id,
                {
                    "id": p.id,
                    "question": p.question,
                    "answer": p.answer,
                    "difficulty": p.difficulty,
                    "rationale": p.rationale or "",
                },
            )


class StarjaxAddition(_Synthetic):
    task = "addition"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First version.", "1.1.0": "Test never repeats a train problem."}


class StarjaxZipChain(_Synthetic):
    task = "zip_chain"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First version.", "1.1.0": "Versioned with addition; output unchanged."}


_BUILDERS = {"addition": StarjaxAddition, "zip_chain": StarjaxZipChain}


def register(task: str, generator: Generator) -> None:
    _GENERATORS[task] = generator


def generate_splits(task: str, params: dict) -> dict[str, list[Problem]]:
    """The builder's examples, in memory: what it writes for these parameters."""
    return {split: list(_GENERATORS[task](split, params)) for split in SPLITS}


def content_digest(splits: dict[str, list[Problem]]) -> str:
    """sha256 of every example, field by field, split by split."""
    h = hashlib.sha256()
    for split in SPLITS:
        for p in splits[split]:
            h.update(json.dumps([split, p.id, p.question, p.answer, p.difficulty, p.rationale or ""]).encode())
    return h.hexdigest()


def load_synthetic(task: str, params: dict, data_dir: str | Path) -> dict[str, list[Problem]]:
    """Prepares (once per distinct content) and reads the builder's train and test splits."""
    blob = json.dumps(params, sort_keys=True)
    name = f"c{content_digest(generate_splits(task, params))[:16]}"
    config = SyntheticConfig(name=name, description=blob, params_json=blob)
    tfds.disable_progress_bar()
    logging.getLogger("absl").setLevel(logging.ERROR)  # "Using custom data configuration ..." on every load
    builder = _BUILDERS[task](config=config, data_dir=str(Path(data_dir).expanduser()), file_format="array_record")
    builder.download_and_prepare()
    out = {}
    for split in SPLITS:
        source = builder.as_data_source(split=split)
        rows = [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in source[i].items()} for i in range(len(source))]
        out[split] = [Problem(r["id"], r["question"], r["answer"], r["difficulty"], r["rationale"] or None) for r in rows]
    return out
