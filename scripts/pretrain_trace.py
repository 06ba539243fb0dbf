"""Held-out accuracy of a base while it pre-trains: whether seeds of one recipe differ by noise
around one solution (which averaging the weights would smooth out) or by which solution they find.

    .venv/bin/python scripts/pretrain_trace.py configs/demo.yaml seed=1 --every 100 --start 400 --ema 0.99 0.997

Pre-trains the base exactly as `starjax star` does (same data, tokenizer, initialisation and
steps; the last row is the run's iteration 0), but through all `pretrain.steps` whatever
pretrain.stop_difficulty says (its weights at the step a stop would keep are that step's row),
in a scratch run directory, and every --every
steps from --start prints the greedy held-out accuracy per difficulty of the weights and of
exponential moving averages of them begun at --start. --out also writes the rows as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

import jax
from flax import nnx

from starjax import runtime
from starjax.config import load_config
from starjax.errors import ConfigError
from starjax.log import log
from starjax.sources import load_model
from starjax.star.base_model import greedy_accuracy, pretrain
from starjax.star.protocols import Context
from starjax.star.setup import build_plugins, prepare


def trace(config: str, overrides: list[str], every: int, start: int, decays: list[float]) -> list[dict]:
    with tempfile.TemporaryDirectory() as scratch:
        cfg = load_config(config, [*overrides, f"run_dir={scratch}"])
        if cfg.pretrain.steps < 1 or cfg.pretrain.warm_steps:
            raise ConfigError("the config must pre-train (pretrain.steps > 0) without a warm start (pretrain.warm_steps=0)")
        if start > cfg.pretrain.steps:
            raise ConfigError(f"--start {start} is past the last pre-training step ({cfg.pretrain.steps})")
        setup = prepare(cfg, allow_config_change=True)
        rules = runtime.start(cfg)
        setup.load(log)
        cfg, task = setup.cfg, setup.task
        rollout = build_plugins(Context(cfg, task, rules)).rollout
        model = load_model(None, cfg.model, rules, cfg.seed)
        measure = greedy_accuracy(cfg, task, rollout, model, setup.tokenizer)
        averages: dict[float, nnx.State] = {}
        rows: list[dict] = []

        def accuracy(params: nnx.State) -> dict:
            m = measure(params, setup.test)
            return {"all": m["test_accuracy"], **m["test_accuracy_by_difficulty"]}

        def on_step(done: int, metrics: dict, params) -> None:
            if done < start:
                return
            weights = params()
            for d in decays:
                previous = averages.get(d, weights)
                averages[d] = jax.tree.map(lambda a, w, d=d: d * a + (1 - d) * w, previous, weights)
            if done % every == 0 or done == cfg.pretrain.steps:
                row = {"step": done, "loss": metrics["loss"], "weights": accuracy(weights)}
                row.update({f"ema {d}": accuracy(a) for d, a in averages.items()})
                rows.append(row)
                log(f"step {done}: " + ", ".join(f"{k} {v['all']:.3f}" for k, v in row.items() if isinstance(v, dict)))

        records = rollout.training_records(task.seed_records(setup.splits))
        p = cfg.pretrain
        pretrain(
            cfg,
            model,
            records,
            setup.tokenizer,
            p.steps,
            p.learning_rate,
            None,
            "pre-train",
            log,
            None,
            on_step=on_step,
            every=every,
        )
        return rows


def table(rows: list[dict]) -> str:
    """One line per evaluated step and weights: overall accuracy, then per difficulty."""
    labels = [k for k in rows[0]["weights"] if k != "all"]
    lines = ["| step | weights | all | " + " | ".join(labels) + " |", "|---" * (3 + len(labels)) + "|"]
    for row in rows:
        for name, acc in ((k, v) for k, v in row.items() if isinstance(v, dict)):
            lines.append(f"| {row['step']} | {name} | {acc['all']:.3f} | " + " | ".join(f"{acc[k]:.2f}" for k in labels) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides, as for `starjax star`")
    ap.add_argument("--every", type=int, default=100, help="evaluate every this many steps")
    ap.add_argument("--start", type=int, default=0, help="first step evaluated, and where the averages begin")
    ap.add_argument("--ema", type=float, nargs="*", default=[], help="decays of moving averages of the weights")
    ap.add_argument("--out", help="also write the rows here as JSON lines")
    args = ap.parse_args(argv)
    try:
        if args.every < 1 or args.start < 0 or not all(0 < d < 1 for d in args.ema):
            raise ConfigError("--every must be >= 1, --start >= 0 and every --ema decay in (0, 1)")
        rows = trace(args.config, args.overrides, args.every, args.start, args.ema)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
