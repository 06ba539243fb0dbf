"""Where a starjax train step's time goes on this machine: a jax.profiler trace of a few steps
of a benchmarks/train.py preset, summed per XLA:CPU kernel (not a benchmark: profiling adds
overhead; use train.py for throughput).

    .venv/bin/python benchmarks/profile_train.py --preset tiny
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import resource
import sys
import tempfile
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import TRAIN_SHAPES, build_starjax


def kernel_times(trace_dir: Path) -> collections.Counter:
    """Microseconds per XLA kernel (events that carry an `hlo_op`), summed over the trace."""
    (trace,) = trace_dir.rglob("*.trace.json.gz")
    events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    out: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("args", {}).get("hlo_op"):
            out[e["name"]] += e["dur"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(TRAIN_SHAPES))
    parser.add_argument("--steps", type=int, default=3, help="traced steps (after 2 untraced ones)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--host-malloc", default="auto", choices=("auto", "reuse", "system"), help="runtime.host_malloc")
    args = parser.parse_args()
    step_fn, state, batches, _ = build_starjax(args.preset, 3 + args.steps, args.host_malloc)
    for i in range(3):  # compile and warm up outside the trace; the last step counts page faults
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        state, metrics = step_fn(state, batches[i])
        float(metrics["loss"])
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for i in range(3, 3 + args.steps):
                state, metrics = step_fn(state, batches[i])
                float(metrics["loss"])
        times = kernel_times(Path(d))
    per_step = {name: us / args.steps / 1e3 for name, us in times.items()}  # ms
    kinds: collections.Counter = collections.Counter()
    for name, ms in per_step.items():
        # YNNPACK fusions are the matmuls (each is rooted at a dot); the rest is elementwise work,
        # reductions, transposes and copies
        kinds["matmul (ynn_fusion)" if name.startswith("ynn_fusion") else re.sub(r"[.\d]+$", "", name)] += ms
    total = sum(per_step.values())
    print(
        f"{args.preset}: {total:.0f} ms of XLA kernels per step (kernels may overlap on the two cores); "
        f"{faults:,} page faults in an untraced step (starjax/host_memory.py)"
    )
    for kind, ms in kinds.most_common(args.top):
        print(f"  {ms:8.1f} ms  {100 * ms / total:4.1f}%  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
