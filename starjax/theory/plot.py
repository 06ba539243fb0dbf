"""Accuracy-vs-iteration PNG for `starjax theory --plot`."""

from __future__ import annotations

from pathlib import Path

from starjax.theory.rlstar import Trajectory


def plot_accuracy(path: str | Path, exact: Trajectory, title: str, simulated: Trajectory | None = None) -> None:
    """Write the exact accuracy curve (and the simulated one, when given) to a PNG file."""
    # Figure + the Agg canvas directly, not pyplot: no global backend state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(exact.iteration, exact.accuracy, "o-", label="exact (infinite samples)")
    if simulated is not None:
        ax.plot(simulated.iteration, simulated.accuracy, "s--", label="simulated (finite samples)")
    ax.set_xlabel("STaR iteration")
    ax.set_ylabel("final-answer accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
