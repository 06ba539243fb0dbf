"""Built-in synthetic tasks are TFDS dataset builders: generated locally, versioned, written as
array_record and read back with `as_data_source` (no TensorFlow). Reading other TFDS datasets is in tfds.py.

A builder config is named by its generation parameters, so a changed digit range or size is
a different dataset, and the same parameters reuse the prepared files.
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
Generator = Callable[[str, dict], Iterator[Problem]]  # (split, params) -> problems
_GENERATORS: dict[str, Generator] = {}


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    params_json: str = "{}"


class _Synthetic(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "First version.", "1.1.0": "addition: test never repeats a train problem."}
    task = ""

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"starjax synthetic task {self.task!r}, generated locally",
            features=tfds.features.FeaturesDict({k: text for k in FIELDS}),
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str):
        params = json.loads(self.builder_config.params_json)
        for p in _GENERATORS[self.task](split, params):
            yield p.id, {"id": p.id, "question": p.question, "answer": p.answer,
                         "difficulty": p.difficulty, "rationale": p.rationale or ""}


class StarjaxAddition(_Synthetic):
    task = "addition"


class StarjaxZipChain(_Synthetic):
    task = "zip_chain"


_BUILDERS = {"addition": StarjaxAddition, "zip_chain": StarjaxZipChain}


def register(task: str, generator: Generator) -> None:
    _GENERATORS[task] = generator


def load_synthetic(task: str, params: dict, data_dir: str | Path) -> dict[str, list[Problem]]:
    """Prepares (once) and reads the builder's train and test splits."""
    blob = json.dumps(params, sort_keys=True)
    name = f"p{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
    config = SyntheticConfig(name=name, description=blob, params_json=blob)
    tfds.disable_progress_bar()
    logging.getLogger("absl").setLevel(logging.ERROR)  # "Using custom data configuration ..." on every load
    builder = _BUILDERS[task](config=config, data_dir=str(Path(data_dir).expanduser()), file_format="array_record")
    builder.download_and_prepare()
    out = {}
    for split in ("train", "test"):
        source = builder.as_data_source(split=split)
        rows = [{k: (v.decode() if isinstance(v, bytes) else v) for k, v in source[i].items()} for i in range(len(source))]
        out[split] = [Problem(r["id"], r["question"], r["answer"], r["difficulty"], r["rationale"] or None) for r in rows]
    return out
