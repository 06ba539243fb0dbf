"""TensorBoard event files without TensorFlow (tensorboardX)."""

from __future__ import annotations

from pathlib import Path


class TensorBoard:
    def __init__(self, directory: str | Path):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(str(directory))

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self._writer.add_scalar(k, v, step)

    def text(self, tag: str, markdown: str, step: int) -> None:
        """Markdown (e.g. a table) under TensorBoard's Text tab."""
        self._writer.add_text(tag, markdown, step)

    def close(self) -> None:
        self._writer.close()
