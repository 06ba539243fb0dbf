"""What a STaR run writes: metrics.jsonl, TensorBoard events, samples/iter_N.jsonl, accuracy.png
and the per-iteration table. Only process 0 writes."""

from __future__ import annotations

import json
from pathlib import Path

from starjax.star.evaluate import difficulty_key

COLUMNS = [("iter", "iteration", "{:d}"), ("train acc", "train_accuracy", "{:.3f}"), ("kept", "kept", "{:d}"),
           ("rational.", "rationalized", "{:d}"), ("steps", "train_steps", "{:d}"), ("test acc", "test_accuracy", "{:.3f}"),
           ("predicted", "predicted_accuracy", "{:.3f}")]
# Only for tasks that check steps: the share of kept rationales with a wrong step.
WRONG_STEP = ("wrong step", "kept_wrong_step", "{:.3f}")


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    """Rewrites metrics.jsonl from the checkpointed history, so a resumed run never duplicates a line."""
    tmp = run_dir / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    tmp.replace(run_dir / "metrics.jsonl")


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def write_samples(run_dir: Path, iteration: int, records: list[dict]) -> None:
    out = run_dir / "samples" / f"iter_{iteration}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(out)


def tensorboard_scalars(record: dict) -> dict[str, float]:
    out = {}
    for k, v in record.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iteration":
            out[f"star/{k}"] = float(v)
        elif isinstance(v, dict):
            out.update({f"star/{k}/{sub}": float(x) for sub, x in v.items() if isinstance(x, (int, float))})
    return out


def plot(run_dir: Path, history: list[dict]) -> Path:
    """Test accuracy per iteration, overall and per difficulty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    its = [r["iteration"] for r in history]
    ax.plot(its, [r["test_accuracy"] for r in history], "k-o", lw=2.5, label="overall")
    labels = sorted({g for r in history for g in r.get("test_accuracy_by_difficulty", {})}, key=difficulty_key)
    if len(labels) > 1:
        for g in labels:
            ax.plot(its, [r.get("test_accuracy_by_difficulty", {}).get(g, float("nan")) for r in history], "--.", label=f"difficulty {g}")
    predicted = [(r["iteration"], r["predicted_accuracy"]) for r in history if r.get("predicted_accuracy") is not None]
    if predicted:
        ax.plot(*zip(*predicted), "x:", color="tab:gray", label="RL-STaR prediction")
    ax.set(xlabel="STaR iteration (0 = base model)", ylabel="test accuracy", ylim=(-0.02, 1.02))
    ax.set_xticks(its)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out = run_dir / "accuracy.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def table(history: list[dict]) -> str:
    """The per-iteration table: one row per iteration, per-difficulty accuracies at the right."""
    labels = sorted({g for r in history for g in r.get("test_accuracy_by_difficulty", {})}, key=difficulty_key)
    columns = COLUMNS + ([WRONG_STEP] if any(r.get("kept_wrong_step") is not None for r in history) else [])
    heads = [h for h, _, _ in columns] + [f"d={g}" for g in labels if len(labels) > 1]
    rows = []
    for r in history:
        cells = [fmt.format(r[k]) if r.get(k) is not None else "-" for _, k, fmt in columns]
        if len(labels) > 1:
            cells += [f"{r['test_accuracy_by_difficulty'][g]:.2f}" if g in r.get("test_accuracy_by_difficulty", {}) else "-" for g in labels]
        rows.append(cells)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(heads), line(["-" * w for w in widths]), *(line(r) for r in rows)])
