"""Continuous batching on star_generate.py's workloads: two ways to refill a free slot, the
fixed engine, and the ceiling any batching could reach.

- continuous, refill between decode runs (host): the engine's first design, kept here to
  compare: bounded decode runs that stop as soon as a group of prompts fits; between two, the
  host reads the finished rows back and a jitted refill fills their slots;
- continuous, refill inside the loop (the engine, `starjax/sampling/continuous.py`): every step
  of the decode loop first moves finished rows to a harvest buffer and, while a group of
  prompts fits, refills free slots from the groups the host staged for the call (about four
  times the slots' rows a call);
- fixed: the fixed engine (batches run until their longest row ends);
- ceiling (demo only): the fixed engine with eos off and every row generating exactly the
  workload's mean completion length: no row ever idles, so its useful tokens/s bound what any
  scheduling of the same rows can reach at this batch size.

The two refills use the same refill and decode step (`continuous.refill`, `decode_step`) and
must give the same tokens; the table gives the median wall time of --repeats runs after one
that compiles, the variants interleaved.

    .venv/bin/python benchmarks/continuous_batching.py              # demo and fewshot tiny; writes RESULTS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from results import publish  # noqa: E402
from star_generate import demo_workload, fewshot_workload  # noqa: E402


class Counted:
    """A program that counts its calls: each is a round trip to the host."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


class NoEos:
    """A tokenizer whose eos never occurs: rows run to their limits."""

    def __init__(self, tokenizer):
        self.pad_id, self.eos_id, self.extra_stop_ids = tokenizer.pad_id, -1, []
        self.decode = tokenizer.decode


def host_refill_programs(sampler, num_samples: int, top_k: int, fuse_weights: bool) -> dict:
    """The engine's first design: a jitted refill, and decode runs that stop as soon as enough
    slots are free for the next group, the host harvesting and refilling between them."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from starjax.sampling import continuous

    graphdef, pad_id = sampler.graphdef, sampler.tokenizer.pad_id

    def fill(params, slots, prefix, *rest):
        return continuous.refill(graphdef, params, slots, prefix, *rest, num_samples=num_samples, top_k=top_k, pad_id=pad_id)

    def decode(params, slots, prefix, target_done, settings):
        model = nnx.merge(graphdef, params)
        fused = model.fused_weights() if fuse_weights else None

        def cond(s):
            return ~jnp.all(s.done) & (jnp.sum(s.done) < target_done)

        step = lambda s: continuous.decode_step(model, fused, s, prefix, settings, top_k, pad_id)  # noqa: E731
        return jax.lax.while_loop(cond, step, slots)

    return {"refill": jax.jit(fill, donate_argnums=(1,)), "decode": jax.jit(decode, donate_argnums=(1,))}


def run_host_refill(sampler, programs: dict, host: dict, prompts, limits, overrides: dict, seed: int):
    """The queue as the engine orders it, refilled by the host between bounded decode runs."""
    import jax

    from starjax.sampling import scheduler
    from starjax.sampling.engine import new_token_cap
    from starjax.sampling.strategies import SamplingSettings

    cfg = sampler.settings(**overrides)
    k = cfg.num_samples
    slots, group = sampler.slot_plan(cfg, len(prompts))
    cap = new_token_cap(cfg.max_new_tokens)
    pad_id = sampler.tokenizer.pad_id
    limits = np.full((len(prompts), k), cfg.max_new_tokens) if limits is None else np.asarray(limits)
    lp = scheduler.shared_prefix_length(prompts)
    prefix = programs["prefix"](sampler.params, np.asarray(prompts[0][:lp], np.int32)[None]) if lp else None
    rests = [p[lp:] for p in prompts]
    buckets = sorted(cfg.prompt_buckets)
    bucket_of = [next(b for b in buckets if b >= len(r)) for r in rests]
    queue = scheduler.bucket_groups(bucket_of, group)
    settings = SamplingSettings.create(cfg, sampler.tokenizer.eos_id, sampler.tokenizer.extra_stop_ids)
    state = programs["init"](slots, max(bucket_of) + cap, cap)
    key = jax.random.key_data(jax.random.key(seed))
    owner = np.full((slots,), -1, np.int64)
    free = list(range(slots))
    out: list[list] = [[None] * k for _ in prompts]
    need = group * k
    while True:
        while queue and len(free) >= len(queue[0]) * k:
            members = queue.pop(0)
            bs = bucket_of[members[0]]
            tokens = np.full((group, bs), pad_id, np.int32)
            lengths, ids = np.zeros((group,), np.int32), np.zeros((group,), np.int32)
            row_limits = np.ones((group, k), np.int32)
            for r, i in enumerate(members):
                tokens[r, bs - len(rests[i]) :], lengths[r], ids[r], row_limits[r] = rests[i], len(rests[i]), i, limits[i]
            targets = np.full((need,), slots, np.int32)
            taken, free = free[: len(members) * k], free[len(members) * k :]
            targets[: len(taken)] = taken
            owner[taken] = [i * k + j for i in members for j in range(k)]
            state = host["refill"](sampler.params, state, prefix, tokens, lengths, row_limits, ids, targets, key, settings)
        if len(free) == slots:  # the engine's results, built as the engine builds them
            stops = {int(t) for t in np.asarray(settings.stop_ids)}
            done_rows = [[sampler._completion(t, lp, t[-1] in stops) for t, lp in row] for row in out]
            return [[c.tokens for c in row] for row in done_rows]
        target = len(queue[0]) * k if queue else slots
        state = host["decode"](sampler.params, state, prefix, np.int32(target), settings)
        tok, lps, ln, done = jax.device_get((state.tokens, state.logprobs, state.lengths, state.done))
        for slot in np.flatnonzero(done & (owner >= 0)):
            prompt, sample = divmod(int(owner[slot]), k)
            n = ln[slot]
            out[prompt][sample] = tok[slot, :n].copy(), lps[slot, :n].copy()
            owner[slot] = -1
            free.append(int(slot))


def tokens_of(sampler, prompts, limits, overrides: dict, engine: str, seed: int) -> list[list[list[int]]]:
    return [[c.tokens for c in row] for row in sampler.generate_ids(prompts, seed, limits, engine=engine, **overrides)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo-run-dir", default=str(HERE.parent / "runs/demo"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from starjax.sampling.engine import Sampler
    from starjax.schema import SamplerConfig

    rows = []
    for workload in ("demo", "fewshot"):
        if workload == "demo":
            model, tokenizer, prompts, limits, overrides, _, cfg = demo_workload(args.demo_run_dir)
            sampler_cfg = cfg.sampler
        else:
            model, tokenizer, prompts, limits, overrides, _ = fewshot_workload("tiny")
            sampler_cfg = SamplerConfig(progress=False)
        sampler = Sampler(model, tokenizer, sampler_cfg)
        cfg = sampler.settings(**overrides)
        programs = sampler.continuous_programs(cfg)
        host_programs = host_refill_programs(sampler, cfg.num_samples, cfg.top_k, cfg.fuse_weights)
        programs["run"] = Counted(programs["run"])  # the engine's own dict: it calls the wrapper
        host_programs["decode"] = Counted(host_programs["decode"])
        calls = {0: host_programs["decode"], 1: programs["run"]}
        variants = {
            "continuous, refill between decode runs (host)": partial(
                run_host_refill, sampler, programs, host_programs, prompts, limits, overrides
            ),
            "continuous, refill inside the loop (the engine)": partial(
                tokens_of, sampler, prompts, limits, overrides, "continuous"
            ),
            "fixed": partial(tokens_of, sampler, prompts, limits, overrides, "fixed"),
        }
        if workload == "demo":  # every row generates the mean completion length, eos off
            busy = Sampler(model, NoEos(tokenizer), sampler_cfg)
            mean = round(sum(len(t) for row in variants["fixed"](0) for t in row) / (len(prompts) * cfg.num_samples))
            every_row = np.full((len(prompts), cfg.num_samples), mean)
            variants[f"ceiling: fixed, every row busy ({mean} tokens)"] = partial(
                tokens_of, busy, prompts, every_row, overrides, "fixed"
            )
        outs, trips = {}, {}
        for i, (name, fn) in enumerate(variants.items()):  # compiles
            before = calls[i].calls if i in calls else 0
            outs[name] = fn(0)
            trips[name] = calls[i].calls - before if i in calls else None
        times: dict[str, list[float]] = {name: [] for name in variants}
        for seed in range(1, args.repeats + 1):
            for name, fn in variants.items():  # interleaved: all see the same machine state
                start = time.perf_counter()
                fn(seed)
                times[name].append(time.perf_counter() - start)
        host, in_loop = list(variants)[:2]
        for name in variants:
            wall = statistics.median(times[name])
            useful = sum(len(t) for row in outs[name] for t in row)
            same = outs[host] == outs[in_loop] if name in (host, in_loop) else None
            rows.append(
                dict(
                    workload=workload,
                    variant=name,
                    wall_s=round(wall, 3),
                    useful_tokens_per_s=round(useful / wall, 1),
                    same_tokens=same,
                    round_trips=trips[name],
                )
            )
            print(rows[-1], file=sys.stderr, flush=True)
    table = [
        "| workload | variant | wall s (median) | useful tokens/s | decode calls (host round trips) | same tokens as the other refill |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        same = "" if r["same_tokens"] is None else r["same_tokens"]
        trips = "" if r["round_trips"] is None else r["round_trips"]
        table.append(
            f"| {r['workload']} | {r['variant']} | {r['wall_s']:.2f} | {r['useful_tokens_per_s']:,.0f} | {trips} | {same} |"
        )
    from machine import describe_machine, matmul_peak_gflops

    body = describe_machine(matmul_peak_gflops()) + "\n\n" + "\n".join(table)
    title = f"Continuous batching: where to refill, and the ceiling (`{' '.join(['python benchmarks/continuous_batching.py'] + sys.argv[1:])}`)"
    publish(
        "continuous_batching",
        title,
        body,
        rows,
        ("workload", "variant", "wall_s", "useful_tokens_per_s", "round_trips", "same_tokens"),
        args,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
