"""STaR's generation phase: starjax's continuous engine, its fixed-batch path and tunix's Sampler.

Workloads, the same prompts for every engine:
- `demo`: `make demo`'s generation phase: the configs/demo.yaml base policy (RUN_DIR/base of
  --demo-run-dir, default runs/demo; pre-trained there from the seed data if absent, about 4
  minutes), its 1,000 training questions x 8 samples at temperature 1, at most 128 new tokens,
  stop at EOS, 128 rows at a time, on one CPU device (the demo runs one model copy per device,
  `sampler.replicas`, each with these programs). `fixed` decodes as the demo does, in caches
  growing by 64 slots (`sampler.cache_growth`); `fixed-whole` in the whole cache from the start.
- `fewshot`: GSM8K-shaped, random weights (`tiny`, `small` presets): a 600-token prefix every
  prompt shares and a 40-token question, 32 questions x 4 samples at temperature 1, 32 rows at a
  time; each row stops at a length drawn from a fixed seeded distribution (mean ~100, max 256),
  the way a stop token would end it.
useful tokens = tokens up to and including each row's stop; rows/s and useful tokens/s use the
median wall time of --repeats timed runs after one untimed run (compilation), starjax's engines
taking turns run by run. tunix runs in
its own environment (benchmarks/peer_envs.py) with random weights of the same shapes, replaying
the rows starjax's continuous engine generated: each batch of rows (grouped as the fixed path
groups them) runs until its longest row ends (benchmarks/peers/tunix_workload.py).

    .venv/bin/python benchmarks/star_generate.py --json          # everything; writes RESULTS.md
    .venv/bin/python benchmarks/star_generate.py --workloads fewshot --presets tiny --engines continuous,fixed --no-write
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from machine import describe_machine, matmul_peak_gflops  # noqa: E402
from results import publish  # noqa: E402

FEWSHOT = dict(prefix=600, question=40, questions=32, samples=4, rows=32, max_new=256, mean_new=100, seed=7)
# fixed-whole: the fixed engine attending to the whole cache from the first step
# (sampler.cache_growth=0), against the demo's growing cache; the fewshot workload's fixed
# engine already does
ENGINES = ("continuous", "fixed", "fixed-whole", "tunix")
JSON_KEYS = ("engine", "workload", "preset", "completions_per_s", "useful_tokens_per_s", "wall_s")


class IdTokenizer:
    """Prompts are token ids already; eos -1 never occurs, so rows end at their limits."""

    pad_id, eos_id, extra_stop_ids = 0, -1, []

    def decode(self, ids) -> str:
        return ""


def fewshot_workload(preset: str):
    """(model, tokenizer, prompts, per-row limits, sampler overrides, prompt bucket)."""
    from starjax.config import load_config
    from starjax.model.transformer import create_model
    from starjax.runtime import start

    vocab = {"tiny": 64, "small": 32000}[preset]
    f = FEWSHOT
    bucket = f["prefix"] + f["question"]
    cfg = load_config(None, [f"model.preset={preset}", f"model.vocab_size={vocab}", "sampler.progress=false"])
    rules = start(cfg)
    model = create_model(cfg.model, rules, seed=0)
    rng = np.random.default_rng(f["seed"])
    prefix = rng.integers(4, vocab, f["prefix"]).tolist()
    prompts = [prefix + rng.integers(4, vocab, f["question"]).tolist() for _ in range(f["questions"])]
    # log-normal lengths, median 85 (mean ~100 after the cut at 256)
    drawn = np.exp(rng.normal(np.log(85), 0.6, (f["questions"], f["samples"])))
    limits = np.clip(np.round(drawn), 8, f["max_new"]).astype(np.int32)
    overrides = dict(
        temperature=1.0,
        num_samples=f["samples"],
        batch_size=f["rows"],
        max_new_tokens=f["max_new"],
        prompt_buckets=[64, bucket],
    )
    return model, IdTokenizer(), prompts, limits, overrides, bucket


def demo_workload(run_dir: str):
    from starjax.config import load_config
    from starjax.runtime import start
    from starjax.star.base_model import base_model
    from starjax.star.protocols import Context
    from starjax.star.setup import build_plugins, prepare

    # one device and one model copy, like every other engine here: the demo runs a copy per
    # device (sampler.replicas), each these same programs (docs/sampling.md)
    one_device = ["runtime.num_cpu_devices=1", "sampler.replicas=1"]
    cfg = load_config(str(ROOT / "configs/demo.yaml"), [f"run_dir={run_dir}", "sampler.progress=false", *one_device])
    setup = prepare(cfg, allow_config_change=True)
    rules = start(cfg)
    setup.run_dir.root.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(f"[demo] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    setup.load(log)
    cfg = setup.cfg
    plugins = build_plugins(Context(cfg, setup.task, rules))
    model = base_model(cfg, rules, setup.task, plugins.rollout, setup.splits, setup.tokenizer, setup.run_dir, log)
    prompts = setup.tokenizer.encode_batch([setup.task.prompt(p, hint=False) for p in setup.train], add_bos=True)
    overrides = dict(temperature=cfg.star.temperature, num_samples=cfg.star.num_samples)
    return model, setup.tokenizer, prompts, None, overrides, max(cfg.sampler.prompt_buckets), cfg


def time_engines(sampler, prompts, limits, overrides: dict, engines: list[str], repeats: int) -> list[dict]:
    """Each engine's untimed run (compilation), then `repeats` rounds (seed 1, 2, ...) that time
    every engine once each, interleaved: a noisy machine slows them alike."""
    outputs: dict[str, list] = {e: [] for e in engines}
    times: dict[str, list[float]] = {e: [] for e in engines}

    def run(engine: str, seed: int) -> None:
        whole = dict(cache_growth=0) if engine == "fixed-whole" else {}
        start = time.perf_counter()
        out = sampler.generate_ids(prompts, seed, limits, engine=engine.removesuffix("-whole"), **overrides, **whole)
        times[engine].append(time.perf_counter() - start)
        outputs[engine].append(out)

    for seed in range(repeats + 1):
        for engine in engines:
            print(f"  starjax-{engine}, seed {seed}{' (compiles)' if seed == 0 else ''}", file=sys.stderr, flush=True)
            run(engine, seed)
    rows = []
    for engine in engines:
        outs, (compile_s, *timed) = outputs[engine], times[engine]
        # every token and log-probability of the timed runs, to tell whether two engines drew the same
        drawn = hashlib.sha1(repr([[(c.tokens, c.logprobs) for per in out for c in per] for out in outs[1:]]).encode())
        count = sum(len(per) for per in outs[-1])
        useful = statistics.median([sum(len(c.tokens) for per in out for c in per) for out in outs[1:]])
        wall = statistics.median(timed)
        rows.append(
            {
                "engine": f"starjax-{engine}",
                "rows": count,
                "useful_tokens": int(useful),
                "compile_s": round(compile_s, 2),
                "times_s": [round(t, 2) for t in timed],
                "wall_s": round(wall, 3),
                "completions_per_s": round(count / wall, 2),
                "useful_tokens_per_s": round(useful / wall, 1),
                "lengths": [[len(c.tokens) for c in per] for per in outs[-1]],
                "samples_sha1": drawn.hexdigest(),
            }
        )
    return rows


def tunix_row(model_cfg, prompts, lengths, rows_per_batch: int, bucket: int, repeats: int) -> dict:
    """tunix on the same prompts (each repeated per sample), batches ending at their longest row."""
    from peer_envs import ensure_env

    rows = [(p, n) for p, per in zip(prompts, lengths) for n in per]
    batches = [rows[i : i + rows_per_batch] for i in range(0, len(rows), rows_per_batch)]
    spec = {
        "model": dict(
            layers=model_cfg.num_layers,
            vocab=model_cfg.vocab_size,
            d_model=model_cfg.d_model,
            mlp=model_cfg.mlp_dim,
            heads=model_cfg.num_heads,
            head_dim=model_cfg.head_dim or model_cfg.d_model // model_cfg.num_heads,
            kv_heads=model_cfg.num_kv_heads,
            rope_theta=model_cfg.rope_theta,
            norm_eps=model_cfg.norm_eps,
        ),
        "prompt_len": bucket,
        "repeats": repeats,
        "batches": [{"prompts": [list(map(int, p)) for p, _ in b], "steps": max(n for _, n in b)} for b in batches],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(spec, f)
        f.flush()
        cmd = [str(ensure_env("tunix")), str(HERE / "peers/tunix_workload.py"), "--spec", f.name]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"engine": "tunix", "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    useful = sum(n for _, n in rows)
    return {
        **row,
        "rows": len(rows),
        "useful_tokens": useful,
        "completions_per_s": round(len(rows) / row["wall_s"], 2),
        "useful_tokens_per_s": round(useful / row["wall_s"], 1),
    }


def run_workload(workload: str, preset: str, engines: list[str], repeats: int, demo_run_dir: str) -> list[dict]:
    from starjax.sampling.engine import Sampler

    if workload == "demo":
        model, tokenizer, prompts, limits, overrides, bucket, cfg = demo_workload(demo_run_dir)
        sampler = Sampler(model, tokenizer, cfg.sampler)
        rows_per_batch = cfg.sampler.batch_size
    else:
        model, tokenizer, prompts, limits, overrides, bucket = fewshot_workload(preset)
        from starjax.schema import SamplerConfig

        sampler = Sampler(model, tokenizer, SamplerConfig(progress=False))
        rows_per_batch = overrides["batch_size"]
    ours = [e for e in engines if e != "tunix" and (e != "fixed-whole" or workload == "demo")]
    print(f"{workload} {preset}: {', '.join(ours)}, interleaved", file=sys.stderr, flush=True)
    rows = time_engines(sampler, prompts, limits, overrides, ours, repeats) if ours else []
    # tunix replays the continuous engine's rows, else the first engine's
    lengths = next((r["lengths"] for r in rows if r["engine"] == "starjax-continuous"), rows[0]["lengths"] if rows else None)
    if "tunix" in engines:
        print(f"{workload} {preset} tunix ...", file=sys.stderr, flush=True)
        if lengths is None:  # replay needs starjax's rows
            lengths = time_engines(sampler, prompts, limits, overrides, ["continuous"], 1)[0]["lengths"]
        rows.append(tunix_row(model.cfg, prompts, lengths, rows_per_batch, bucket, repeats))
    drawn = {r["engine"]: r.get("samples_sha1") for r in rows}
    for row in rows:
        row.pop("lengths", None)
        row.update(workload=workload, preset=preset)
        if row["engine"] == "starjax-fixed-whole" and "starjax-fixed" in drawn:
            same = row["samples_sha1"] == drawn["starjax-fixed"]
            row["engine"] += f" (samples {'the same as' if same else 'not those of'} fixed)"
    return rows


def format_table(rows: list[dict]) -> str:
    table = [
        "| workload | preset | engine | rows | useful tokens | wall s (median) | rows/s | useful tokens/s | compile s | continuous / this |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            table.append(f"| {row['workload']} | {row['preset']} | {row['engine']} | failed: {row['error']} | | | | | | |")
            continue
        ours = next(
            (
                r
                for r in rows
                if r["engine"] == "starjax-continuous" and r["workload"] == row["workload"] and r["preset"] == row["preset"]
            ),
            None,
        )
        ratio = f"{ours['useful_tokens_per_s'] / row['useful_tokens_per_s']:.2f}x" if ours and ours is not row else ""
        table.append(
            f"| {row['workload']} | {row['preset']} | {row['engine']} | {row['rows']} | {row['useful_tokens']:,} | {row['wall_s']:.2f} | "
            f"{row['completions_per_s']:.1f} | {row['useful_tokens_per_s']:,.0f} | {row.get('compile_s', 0):.1f} | {ratio} |"
        )
    return "\n".join(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="demo,fewshot")
    parser.add_argument("--presets", default="tiny,small", help="for fewshot (demo has its own model)")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo-run-dir", default=str(ROOT / "runs/demo"))
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on the last line")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args()
    workloads, engines = args.workloads.split(","), args.engines.split(",")
    unknown = [w for w in workloads if w not in ("demo", "fewshot")] + [e for e in engines if e not in ENGINES]
    unknown += [p for p in args.presets.split(",") if p not in ("tiny", "small")]
    if unknown or args.repeats < 1:
        parser.error(f"unknown workload/engine/preset {unknown}" if unknown else "--repeats must be >= 1")

    peak = matmul_peak_gflops()
    rows = []
    for workload in workloads:
        for preset in ["demo"] if workload == "demo" else args.presets.split(","):
            rows += run_workload(workload, preset, engines, args.repeats, args.demo_run_dir)
    body = describe_machine(peak) + "\n\n" + format_table(rows)
    title = f"STaR generation (`{' '.join(['python benchmarks/star_generate.py'] + sys.argv[1:])}`)"
    publish("star_generate", title, body, rows, JSON_KEYS, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
