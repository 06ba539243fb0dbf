"""Continuous batching on star_generate.py's workloads: two ways to refill a free slot, the
fixed engine, and the ceiling any batching could reach.

- continuous, refill between decode runs (starjax's engine): bounded decode runs; between two,
  the host reads the finished rows back and a jitted refill fills their slots
  (`starjax/sampling/scheduler.py`);
- continuous, refill inside the loop: one program for the whole queue; every step of the decode
  loop first moves finished rows to an output buffer and, while a group of prompts fits,
  refills under `lax.cond`;
- fixed: the fixed engine (batches run until their longest row ends);
- ceiling (demo only): the fixed engine with eos off and every row generating exactly the
  workload's mean completion length: no row ever idles, so its useful tokens/s bound what any
  scheduling of the same rows can reach at this batch size.

The two refills use the same refill and decode step (`starjax/sampling/continuous.py`) and must
give the same tokens; the table gives the median wall time of --repeats runs after one that
compiles, the variants interleaved.

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


class NoEos:
    """A tokenizer whose eos never occurs: rows run to their limits."""

    def __init__(self, tokenizer):
        self.pad_id, self.eos_id, self.extra_stop_ids = tokenizer.pad_id, -1, []
        self.decode = tokenizer.decode


def in_loop_program(sampler, num_samples: int, top_k: int, fuse_weights: bool):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from starjax.sampling import continuous

    graphdef, pad_id = sampler.graphdef, sampler.tokenizer.pad_id

    def run(params, slots, prefix, prompts, lengths, limits, ids, seed_key, settings, total_rows):
        model = nnx.merge(graphdef, params)
        fused = model.fused_weights() if fuse_weights else None
        rows, cap = slots.tokens.shape
        groups, group = lengths.shape
        need = group * num_samples
        outputs = (
            jnp.full((total_rows, cap), pad_id, jnp.int32),
            jnp.zeros((total_rows, cap), jnp.float32),
            jnp.zeros((total_rows,), jnp.int32),
        )
        carry = (slots, jnp.full((rows,), -1, jnp.int32), jnp.int32(0), outputs)

        def harvest(c):
            s, owner, q, (tok, lp, ln) = c
            finished = s.done & (owner >= 0)
            at = jnp.where(finished, owner, total_rows)  # elsewhere: dropped
            outputs = (
                tok.at[at].set(s.tokens, mode="drop"),
                lp.at[at].set(s.logprobs, mode="drop"),
                ln.at[at].set(s.lengths, mode="drop"),
            )
            return s, jnp.where(finished, -1, owner), q, outputs

        def fits(c):
            s, owner, q, _ = c
            return (q < groups) & (jnp.sum(owner < 0) >= need)

        def refill(c):
            s, owner, q, outputs = c
            free_first = jnp.argsort(owner >= 0, stable=True)[:need]
            real = jnp.repeat(lengths[q] > 0, num_samples)
            targets = jnp.where(real, free_first, rows)
            s = continuous.refill(
                graphdef, params, s, prefix, prompts[q], lengths[q], limits[q], ids[q], targets, seed_key, settings,
                num_samples=num_samples, top_k=top_k, pad_id=pad_id,
            )  # fmt: skip
            row_ids = (ids[q][:, None] * num_samples + jnp.arange(num_samples)).reshape(-1)
            return s, owner.at[targets].set(row_ids, mode="drop"), q + 1, outputs

        def body(c):
            c = jax.lax.while_loop(fits, refill, harvest(c))
            s, owner, q, outputs = c
            return continuous.decode_step(model, fused, s, prefix, settings, top_k, pad_id), owner, q, outputs

        def cond(c):
            _, owner, q, _ = c
            return (q < groups) | jnp.any(owner >= 0)

        return jax.lax.while_loop(cond, body, carry)[3]

    return jax.jit(run, static_argnums=(9,), donate_argnums=(1,))


def run_in_loop(sampler, programs: dict, program, prompts, limits, overrides: dict, seed: int):
    """The whole queue in one call: prompts padded to the largest bucket they use, groups as the
    host scheduler makes them."""
    import jax

    from starjax.sampling import scheduler
    from starjax.sampling.engine import new_token_cap
    from starjax.sampling.strategies import SamplingSettings

    cfg = sampler.settings(**overrides)
    k = cfg.num_samples
    slots, group = sampler.slot_plan(cfg, len(prompts))
    cap = new_token_cap(cfg.max_new_tokens)
    lp = scheduler.shared_prefix_length(prompts)
    prefix = programs["prefix"](sampler.params, np.asarray(prompts[0][:lp], np.int32)[None]) if lp else None
    rests = [p[lp:] for p in prompts]
    bs = next(b for b in sorted(cfg.prompt_buckets) if b >= max(len(r) for r in rests))
    n = len(prompts)
    groups = -(-n // group)
    tokens = np.full((groups * group, bs), sampler.tokenizer.pad_id, np.int32)
    lengths = np.zeros((groups * group,), np.int32)
    for i, r in enumerate(rests):
        tokens[i, bs - len(r) :], lengths[i] = r, len(r)
    lim = np.ones((groups * group, k), np.int32)
    lim[:n] = np.full((n, k), cfg.max_new_tokens) if limits is None else limits
    ids = np.minimum(np.arange(groups * group), n - 1).astype(np.int32)
    settings = SamplingSettings.create(cfg, sampler.tokenizer.eos_id, sampler.tokenizer.extra_stop_ids)
    state = programs["init"](slots, bs + cap, cap)
    key = jax.random.key_data(jax.random.key(seed))
    out = program(
        sampler.params, state, prefix, tokens.reshape(groups, group, bs), lengths.reshape(groups, group),
        lim.reshape(groups, group, k), ids.reshape(groups, group), key, settings, n * k,
    )  # fmt: skip
    tok, _, ln = jax.device_get(out)
    return [[tok[i * k + j, : ln[i * k + j]].tolist() for j in range(k)] for i in range(n)]


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
        program = in_loop_program(sampler, cfg.num_samples, cfg.top_k, cfg.fuse_weights)
        variants = {
            "continuous, refill between decode runs (host)": partial(
                tokens_of, sampler, prompts, limits, overrides, "continuous"
            ),
            "continuous, refill inside the loop": partial(run_in_loop, sampler, programs, program, prompts, limits, overrides),
            "fixed": partial(tokens_of, sampler, prompts, limits, overrides, "fixed"),
        }
        if workload == "demo":  # every row generates the mean completion length, eos off
            busy = Sampler(model, NoEos(tokenizer), sampler_cfg)
            mean = round(sum(len(t) for row in variants["fixed"](0) for t in row) / (len(prompts) * cfg.num_samples))
            every_row = np.full((len(prompts), cfg.num_samples), mean)
            variants[f"ceiling: fixed, every row busy ({mean} tokens)"] = partial(
                tokens_of, busy, prompts, every_row, overrides, "fixed"
            )
        outs = {name: fn(0) for name, fn in variants.items()}  # compiles
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
                )
            )
            print(rows[-1], file=sys.stderr, flush=True)
    table = [
        "| workload | variant | wall s (median) | useful tokens/s | same tokens as the other refill |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        same = "" if r["same_tokens"] is None else r["same_tokens"]
        table.append(f"| {r['workload']} | {r['variant']} | {r['wall_s']:.2f} | {r['useful_tokens_per_s']:,.0f} | {same} |")
    from machine import describe_machine, matmul_peak_gflops

    body = describe_machine(matmul_peak_gflops()) + "\n\n" + "\n".join(table)
    title = f"Continuous batching: where to refill, and the ceiling (`{' '.join(['python benchmarks/continuous_batching.py'] + sys.argv[1:])}`)"
    publish(
        "continuous_batching", title, body, rows, ("workload", "variant", "wall_s", "useful_tokens_per_s", "same_tokens"), args
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
