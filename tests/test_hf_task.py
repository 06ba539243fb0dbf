"""The hf task: Hugging Face datasets saved as files (Hub parquet and JSON lines, save_to_disk's
arrow) read into the same problems as the JSONL task reads from the same rows."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from starjax.config import load_config
from starjax.data_files import hf_split_files
from starjax.errors import ConfigError
from starjax.tasks.registry import make_task

ROOT = Path(__file__).resolve().parent.parent
GSM8K = ROOT / "tests/data/gsm8k_sample.jsonl"
CSQA = ROOT / "tests/data/commonsenseqa_sample.jsonl"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _task(name: str, *overrides: str):
    return make_task(load_config(None, [f"task.name={name}", *overrides]))


def _problems(task) -> list[tuple]:
    s = task.load()
    return [[(p.question, p.answer, p.rationale) for p in split] for split in (s.train, s.test)]


@pytest.mark.parametrize("fmt, source", [("gsm8k", GSM8K), ("commonsenseqa", CSQA)])
def test_hub_parquet_reads_as_the_jsonl_rows(tmp_path, fmt, source):
    """The Hub's layout (`main/train-00000-of-00001.parquet`), nested CommonsenseQA columns included."""
    rows = _rows(source)
    (tmp_path / "main").mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:4]), tmp_path / "main" / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[4:]), tmp_path / "main" / "test-00000-of-00001.parquet")
    (tmp_path / "README.md").write_text("dataset card")
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    test.write_text("".join(json.dumps(r) + "\n" for r in rows[4:]))
    hf = _task("hf", f"task.hf.train={tmp_path / 'main'}", f"task.hf.format={fmt}")
    jsonl = _task("jsonl", f"task.jsonl.train={train}", f"task.jsonl.test={test}", f"task.jsonl.format={fmt}")
    assert _problems(hf) == _problems(jsonl)
    assert all(_problems(hf))  # both splits read


def test_save_to_disk_arrow_with_field_mapping_and_shards(tmp_path):
    """`DatasetDict.save_to_disk`: a folder per split of arrow IPC stream shards, read in order."""
    rows = [{"q": f"What is {i} + 1?", "a": str(i + 1)} for i in range(6)]
    for split, part in (("train", rows[:4]), ("validation", rows[4:])):
        d = tmp_path / split
        d.mkdir()
        for shard, chunk in enumerate((part[: len(part) // 2], part[len(part) // 2 :])):
            table = pa.Table.from_pylist(chunk)
            with pa.OSFile(str(d / f"data-{shard:05d}-of-00002.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table)
        (d / "state.json").write_text("{}")
        (d / "dataset_info.json").write_text("{}")
    (tmp_path / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "validation"]}))
    task = _task("hf", f"task.hf.train={tmp_path}", "task.hf.test_split=validation", "task.hf.fields={question: q, answer: a}")
    train, test = _problems(task)
    assert [q for q, _, _ in train] == [r["q"] for r in rows[:4]]
    assert [(q, a) for q, a, _ in test] == [(r["q"], r["a"]) for r in rows[4:]]


def test_jsonl_files_and_a_held_out_split(tmp_path):
    (tmp_path / "data").mkdir()
    rows = [{"question": f"Say {i}.", "answer": str(i)} for i in range(40)]
    (tmp_path / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = _task("hf", f"task.hf.train={tmp_path}", "task.hf.test_split=null", "task.hf.test_fraction=0.25")
    train, test = _problems(task)
    assert len(train) + len(test) == 40 and 0 < len(test) < 40
    assert hf_split_files(tmp_path, "train") == [tmp_path / "data" / "train.jsonl"]
    assert hf_split_files(tmp_path, "test") == []


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="needs task.hf.train"):
        load_config(None, ["task.name=hf"])
    with pytest.raises(ConfigError, match="not found"):
        _task("hf", f"task.hf.train={tmp_path / 'missing'}").load()
    (tmp_path / "train-0.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="cannot read"):
        _task("hf", f"task.hf.train={tmp_path}").load()
    (tmp_path / "train-0.parquet").unlink()
    pq.write_table(pa.Table.from_pylist([{"question": "a", "answer": "b"}]), tmp_path / "train-0.parquet")
    with pytest.raises(ConfigError, match=r"no data files for split 'test'; it has \['train'\]"):
        _task("hf", f"task.hf.train={tmp_path}").load()
