"""Where metrics go besides metrics.jsonl: TensorBoard always, Weights & Biases when
`logging.wandb.project` is set (online, or offline under the run directory for `wandb sync`).

Each call names its x axis (`star/iteration`, `star/fine_tune/step`, `train/step`): TensorBoard
takes it as the step; W&B, whose own step must only grow, gets it as a metric of its own that
the logged keys are plotted against, so per-iteration and per-step curves interleave freely.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from starjax.errors import ConfigError
from starjax.run_dir import RunDir
from starjax.schema import Config
from starjax.training.tensorboard import TensorBoard


class Trackers:
    def __init__(self, tensorboard: TensorBoard, wandb_run: Any = None):
        self.tensorboard = tensorboard
        self.wandb = wandb_run
        self._defined: set[str] = set()  # keys W&B already plots against their axis

    @classmethod
    def open(cls, cfg: Config, run_dir: RunDir) -> "Trackers":
        return cls(TensorBoard(run_dir.tensorboard), _wandb_run(cfg, run_dir) if cfg.logging.wandb.project else None)

    def scalars(self, metrics: dict[str, float], step: int, axis: str) -> None:
        self.tensorboard.scalars(metrics, step)
        if self.wandb is not None:
            for key in metrics.keys() - self._defined:
                self.wandb.define_metric(key, step_metric=axis)
            self._defined |= metrics.keys()
            self.wandb.log({**metrics, axis: step})

    def samples(self, tag: str, markdown: str, columns: tuple[str, ...], rows: list[list], step: int, axis: str) -> None:
        """A table: `markdown` under TensorBoard's Text tab, `columns` x `rows` as a W&B Table."""
        self.tensorboard.text(tag, markdown, step)
        if self.wandb is not None:
            import wandb

            self.wandb.log({tag: wandb.Table(columns=list(columns), data=rows), axis: step})

    def close(self) -> None:
        self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def _wandb_run(cfg: Config, run_dir: RunDir):
    try:
        import wandb
    except ImportError:
        raise ConfigError("logging.wandb.project is set but wandb is not installed: pip install 'starjax[wandb]'") from None
    w = cfg.logging.wandb
    run_dir.wandb.mkdir(parents=True, exist_ok=True)
    id_file = run_dir.wandb / "run_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id)
    return wandb.init(
        project=w.project,
        entity=w.entity,
        name=w.name or run_dir.root.resolve().name,
        dir=str(run_dir.root),
        mode=w.mode,
        id=run_id,
        resume="allow",
        config=dataclasses.asdict(cfg),
    )
