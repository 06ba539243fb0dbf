"""`RunDir`: every path of a run directory, in one place.

config.yaml          the config as given (a resume is compared with it)
metrics.jsonl        one line per STaR iteration (sft: per logged step)
accuracy.png         the STaR curves
tb/                  TensorBoard events
wandb/               W&B's files and run id (with logging.wandb.project)
tokenizer.model      the tokenizer trained on the task text (absent when one was given)
tokenizer_cache/     its training cache, keyed by content
samples/iter_N.jsonl every sampled attempt of iteration N with its verdict
state/<step>         the STaR loop's JSON checkpoints (star/state.py)
base/                the pre-trained base model (warm/: after the optional warm start)
pretrain/, pretrain_warm/   their train-state checkpoints while they run
params/iter_N/       the policy of STaR iteration N (sft: params/ holds the fine-tuned model)
train/iter_N/        iteration N's fine-tune checkpoints while it runs
checkpoints/         sft's train-state checkpoints

A gs:// (s3://, az://) run_dir is a local copy that `pull` updates and `sync` pushes (storage.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starjax import storage
from starjax.errors import ConfigError


@dataclass(frozen=True)
class RunDir:
    TOKENIZER = "tokenizer.model"

    root: Path  # where the commands read and write: the directory itself, or a remote one's local copy
    mirror: storage.Mirror | None = None

    @classmethod
    def at(cls, path: str | Path) -> RunDir:
        """No I/O: `pull` before resuming or reading a remote run."""
        if storage.is_remote(path):
            mirror = storage.Mirror(str(path))
            return cls(mirror.local, mirror)
        return cls(Path(path))

    def pull(self) -> RunDir:
        """This run directory with a remote one's local copy brought up to date (a resume, a read)."""
        if self.mirror is not None:
            self.mirror.pull()
        return self

    @property
    def location(self) -> str:
        """Where the run is, for messages: the remote path, or the local directory."""
        return self.mirror.url if self.mirror is not None else str(self.root.resolve())

    def sync(self) -> None:
        """Pushes a remote run directory's local copy (what changed); nothing for a local one.
        Called at every checkpoint, iteration and the end, on the lead process only (a remote
        run_dir is single-process: runtime.start)."""
        if self.mirror is not None:
            self.mirror.push()

    def check(self) -> None:
        """For the commands that write a run directory, before they compute anything."""
        if self.mirror is not None:
            if self.mirror.fs.isfile(self.mirror.root):
                raise ConfigError(f"run_dir={self.mirror.url} is a file, not a directory; give another run_dir")
        elif self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"run_dir={self.root} is a file, not a directory; give another run_dir")

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def plot(self) -> Path:
        return self.root / "accuracy.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def wandb(self) -> Path:
        """W&B's files (offline runs) and `wandb/run_id`, so a resumed run continues the same W&B run."""
        return self.root / "wandb"

    @property
    def tokenizer(self) -> Path:
        return self.root / self.TOKENIZER

    @property
    def tokenizer_cache(self) -> Path:
        return self.root / "tokenizer_cache"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def warm(self) -> Path:
        return self.root / "warm"

    @property
    def below(self) -> Path:
        """The last pre-training check's weights below the bar (pretrain.stop_before)."""
        return self.root / "pretrain_below"

    def pretrain_checkpoints(self, stage: str) -> Path:
        """`pretrain` or `pretrain_warm`."""
        return self.root / stage

    @property
    def params(self) -> Path:
        return self.root / "params"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def samples(self, iteration: int) -> Path:
        return self.root / "samples" / f"iter_{iteration}.jsonl"

    def sampled_iterations(self) -> list[int]:
        """1, 2, ... up to the last iteration whose samples are written."""
        n = 0
        while self.samples(n + 1).is_file():
            n += 1
        return list(range(1, n + 1))

    def policy(self, iteration: int) -> Path:
        return self.params / f"iter_{iteration}"

    def fine_tune_checkpoints(self, iteration: int) -> Path:
        return self.root / "train" / f"iter_{iteration}"

    def newest_policy(self) -> Path | None:
        """The newest STaR policy (params/iter_N), else the pre-trained base, else None."""
        iters = sorted((int(p.name[5:]), p) for p in self.params.glob("iter_*") if p.name[5:].isdigit() and p.is_dir())
        if iters:
            return iters[-1][1]
        return self.base if self.base.is_dir() else None
