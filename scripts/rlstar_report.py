"""Theory vs neural for RL-STaR runs of `starjax star` on zip_chain: a markdown table per run
and one PNG of accuracy per iteration.

    python scripts/rlstar_report.py runs/rlstar_zip_d02 runs/rlstar_zip_d01 runs/rlstar_zip_one_zero \
        --plot docs/rlstar_neural.png > /tmp/tables.md

Per iteration n: the neural policy's sampled accuracy (pass@1 over eval_samples samples at
temperature 1), the tabular accuracy implied by policy n's own d_hat (a check of the uniform-error
assumption), the theory's one-step prediction for it from d_hat of policy n-1 (measured on
that policy's samples), the pure theory curve from the pre-training kernel's d, d_hat_t of
policy n (measured when iteration n+1 samples from it), and the share of kept trajectories with
a wrong intermediate step, measured and predicted from d_hat.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from starjax import theory


def load(run: Path) -> tuple[list[dict], dict]:
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
    return history, cfg


def rows(history: list[dict], cfg: dict) -> list[dict]:
    z = cfg["task"]["zip_chain"]
    m, t = 4 ** z["bits"], z["bits"]
    nominal = list(z["seed_delta"]) * (t if len(z["seed_delta"]) == 1 else 1)
    pure = theory.trajectory(nominal, m, len(history) - 1).accuracy
    out = []
    for n, r in enumerate(history):
        nxt = history[n + 1] if n + 1 < len(history) else {}
        out.append(
            {
                "iteration": n,
                "neural": r.get("pass_at_k", {}).get("1"),
                "predicted": r.get("predicted_accuracy"),
                "theory_nominal": pure[n] if n < len(pure) else None,
                "d_hat": nxt.get("d_hat"),
                "theory_own": nxt.get("theory_accuracy_now"),
                "kept_wrong": nxt.get("kept_wrong_step"),
                "kept_wrong_theory": nxt.get("theory_kept_wrong_step"),
            }
        )
    return out


def markdown(name: str, table: list[dict]) -> str:
    f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    lines = [
        f"**{name}**",
        "",
        "| iteration | neural accuracy | theory from its own d_hat | theory from previous d_hat | theory (nominal d) | d_hat per step | kept with a wrong step: measured / theory |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        d = "-" if r["d_hat"] is None else ", ".join(f"{x:.3f}" for x in r["d_hat"])
        lines.append(
            f"| {r['iteration']} | {f(r['neural'])} | {f(r['theory_own'])} | {f(r['predicted'])} | {f(r['theory_nominal'])} | {d} | "
            f"{f(r['kept_wrong'])} / {f(r['kept_wrong_theory'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    tables = {run.name: rows(*load(run)) for run in args.runs}
    print("\n\n".join(markdown(name, t) for name, t in tables.items()))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.6), squeeze=False)
        for ax, (name, t) in zip(axes[0], tables.items()):
            its = [r["iteration"] for r in t]
            ax.plot(its, [r["neural"] for r in t], "k-o", label="neural (sampled)")
            nan = lambda x: float("nan") if x is None else x  # noqa: E731
            ax.plot(
                its,
                [nan(r["theory_own"]) for r in t],
                "s-",
                color="tab:green",
                ms=3,
                alpha=0.8,
                label="theory from its own d_hat",
            )
            ax.plot(its, [nan(r["predicted"]) for r in t], "x:", color="tab:red", label="theory from previous d_hat")
            ax.plot(its, [r["theory_nominal"] for r in t], "--", color="tab:blue", label="theory, nominal d")
            ax.set(title=name, xlabel="iteration", ylabel="accuracy", ylim=(-0.02, 1.02))
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
