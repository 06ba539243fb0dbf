"""logging.wandb: a STaR run logs to W&B offline (no network) beside TensorBoard: per-iteration
and per-fine-tune-step curves on their own axes, the sample table, and one W&B run across a resume."""

import json
import struct
from pathlib import Path

import pytest
from test_star import star_args, write_task

from starjax.cli import main
from starjax.config import load_config
from starjax.errors import ConfigError


def _records(path: Path) -> list:
    """The records of a W&B transaction log (`run-ID.wandb`): a 7-byte header, then LevelDB-style
    blocks of 32 KiB holding chunks (checksum, length, type) of serialized `Record` protos."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, out, buf = path.read_bytes(), 7, [], b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        buf = (b"" if kind in (1, 2) else buf) + data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
    return out


def _history(run_dir: Path) -> list[dict]:
    rows = []
    for log in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for r in _records(log):
            if r.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
    return rows


@pytest.mark.slow
def test_star_run_logs_to_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    d = write_task(tmp_path)
    run = tmp_path / "run"
    extra = ["logging.wandb.project=starjax-test", "logging.wandb.mode=offline", "star.iterations=1"]
    assert main(["star", *star_args(d, run, *extra)]) == 0
    history = _history(run)
    iterations = [h for h in history if "star/test_accuracy" in h]
    assert [h["star/iteration"] for h in iterations] == [0, 1]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["star/test_accuracy"] for h in iterations] == [m["test_accuracy"] for m in metrics]
    steps = [h for h in history if "star/fine_tune/loss" in h]
    assert [h["star/fine_tune/step"] for h in steps] == list(range(1, len(steps) + 1)) and steps
    assert [h["star/fine_tune/loss"] for h in steps] == pytest.approx(metrics[1]["fine_tune"]["loss"], rel=1e-5)
    tables = [h for h in history if h.get("star/samples/_type") == "table-file"]
    assert len(tables) == 1 and tables[0]["star/iteration"] == 1 and tables[0]["star/samples/nrows"] == 16
    table = json.loads(next(run.glob(f"wandb/offline-run-*/files/{tables[0]['star/samples/path']}")).read_text())
    samples = [json.loads(line) for line in (run / "samples" / "iter_1.jsonl").read_text().splitlines()][:16]
    assert table["columns"] == ["question", "completion", "extracted", "correct", "hinted"]
    assert [row[:2] + row[3:] for row in table["data"]] == [
        [s["question"], s["completion"], s["correct"], s["hinted"]] for s in samples
    ]
    run_id = (run / "wandb" / "run_id").read_text()
    # a second invocation with more iterations resumes the same W&B run
    assert main(["star", *star_args(d, run, *extra[:2], "star.iterations=2", "--allow-config-change")]) == 0
    assert (run / "wandb" / "run_id").read_text() == run_id
    assert [h["star/iteration"] for h in _history(run) if "star/test_accuracy" in h] == [0, 1, 2]


def test_wandb_settings_are_checked():
    with pytest.raises(ConfigError, match="logging.wandb.mode='local' must be online or offline"):
        load_config(None, ["logging.wandb.mode=local"])
