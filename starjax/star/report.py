"""What a STaR run writes: metrics.jsonl, TensorBoard events, samples/iter_N.jsonl, accuracy.png
and the per-iteration table. Only process 0 writes."""

from __future__ import annotations

import json
from pathlib import Path

from starjax.data_files import write_jsonl
from starjax.run_dir import RunDir
from starjax.star.evaluate import difficulty_key

COLUMNS = [
    ("iter", "iteration", "{:d}"),
    ("train acc", "train_accuracy", "{:.3f}"),
    ("kept", "kept", "{:d}"),
    ("rational.", "rationalized", "{:d}"),
    ("steps", "train_steps", "{:d}"),
    ("test acc", "test_accuracy", "{:.3f}"),
]
# Only for tasks that check steps: the share of kept rationales with a wrong step.
WRONG_STEP = ("wrong step", "kept_wrong_step", "{:.3f}")
# The policy of row n on the training questions at star.temperature: its measured pass@1 (the
# samples iteration n + 1 draws from it) and what RL-STaR predicted for it from iteration n's.
PASS_AT_1 = (("pass@1", "sampled_next", "{:.3f}"), ("predicted", "predicted_accuracy", "{:.3f}"))


def by_policy(history: list[dict]) -> list[dict]:
    """Each record with `sampled_next`: the sample_accuracy of its policy, which the next
    iteration measures (None for the last one)."""
    return [{**r, "sampled_next": nxt.get("sample_accuracy") if nxt else None} for r, nxt in zip(history, [*history[1:], None])]


def write_metrics(out: Path, history: list[dict]) -> None:
    """metrics.jsonl, rewritten from the checkpointed history."""
    write_jsonl(out, history)


def read_metrics(run_dir: str | Path) -> list[dict]:
    return [json.loads(line) for line in RunDir.at(run_dir).pull().metrics.read_text().splitlines()]


def write_samples(out: Path, records: list[dict]) -> None:
    """samples/iter_N.jsonl: every attempt of an iteration with its verdict and scores."""
    write_jsonl(out, records)


SAMPLES_SHOWN = 16  # sampled attempts per iteration in the TensorBoard / W&B sample table
SAMPLE_COLUMNS = ("question", "completion", "extracted", "correct", "hinted")


def sample_rows(samples: list[dict]) -> list[list]:
    """Sampled attempts as rows of SAMPLE_COLUMNS: the text columns as strings, the verdicts as they are."""
    return [
        [str(s.get("question", "")), str(s.get("completion", "")), str(s.get("extracted")), s.get("correct"), s.get("hinted")]
        for s in samples
    ]


def samples_markdown(rows: list[list]) -> str:
    """`sample_rows` as a markdown table."""

    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", "<br>")

    lines = ["| " + " | ".join(SAMPLE_COLUMNS) + " |", "|" + "---|" * len(SAMPLE_COLUMNS)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def tensorboard_scalars(record: dict) -> dict[str, float]:
    out = {}
    for k, v in record.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iteration":
            out[f"star/{k}"] = float(v)
        elif isinstance(v, dict):
            out.update({f"star/{k}/{sub}": float(x) for sub, x in v.items() if isinstance(x, (int, float))})
    return out


def plot(out: Path, history: list[dict]) -> Path:
    """Left: greedy test accuracy per iteration, overall and per difficulty. Right, where the run
    has a prediction: pass@1 on the training questions at star.temperature, measured and as
    RL-STaR predicted it (like with like: both are the same policy's sampled accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = by_policy(history)
    predicted = [(r["iteration"], r["predicted_accuracy"]) for r in rows if r.get("predicted_accuracy") is not None]
    fig, axes = plt.subplots(1, 2 if predicted else 1, figsize=(12 if predicted else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    its = [r["iteration"] for r in rows]
    ax.plot(its, [r["test_accuracy"] for r in rows], "k-o", lw=2.5, label="overall")
    labels = sorted({g for r in rows for g in r.get("test_accuracy_by_difficulty", {})}, key=difficulty_key)
    if len(labels) > 1:
        for g in labels:
            ax.plot(
                its, [r.get("test_accuracy_by_difficulty", {}).get(g, float("nan")) for r in rows], "--.", label=f"difficulty {g}"
            )
    ax.set(
        title="test questions, greedy",
        xlabel="policy after STaR iteration n (0 = base model)",
        ylabel="accuracy (greedy decoding)",
    )
    if predicted:
        right = axes[0][1]
        sampled = [(r["iteration"], r["sampled_next"]) for r in rows if r.get("sampled_next") is not None]
        if sampled:
            right.plot(*zip(*sampled), "k-o", label="measured (drawn in iteration n + 1)")
        right.plot(*zip(*predicted), "x:", color="tab:red", label="RL-STaR prediction (from iteration n's samples)")
        right.set(
            title="training questions, sampled at star.temperature",
            xlabel="policy after STaR iteration n",
            ylabel="pass@1 (share of correct samples)",
        )
    for a in axes[0]:
        a.set_ylim(-0.02, 1.02)
        a.set_xticks(its)
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def table(history: list[dict]) -> str:
    """The per-iteration table: one row per iteration, per-difficulty test accuracies at the right;
    with predictions, the row's policy's measured and predicted pass@1 (`PASS_AT_1`) before them."""
    labels = sorted({g for r in history for g in r.get("test_accuracy_by_difficulty", {})}, key=difficulty_key)
    columns = COLUMNS + ([WRONG_STEP] if any(r.get("kept_wrong_step") is not None for r in history) else [])
    if any(r.get("predicted_accuracy") is not None for r in history):
        columns += list(PASS_AT_1)
    heads = [h for h, _, _ in columns] + [f"d={g}" for g in labels if len(labels) > 1]
    rows = []
    for r in by_policy(history):
        cells = [fmt.format(r[k]) if r.get(k) is not None else "-" for _, k, fmt in columns]
        if len(labels) > 1:
            cells += [
                f"{r['test_accuracy_by_difficulty'][g]:.2f}" if g in r.get("test_accuracy_by_difficulty", {}) else "-"
                for g in labels
            ]
        rows.append(cells)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(heads), line(["-" * w for w in widths]), *(line(r) for r in rows)])
