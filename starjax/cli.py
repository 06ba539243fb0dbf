"""`starjax` command line: `starjax <command> CONFIG [key=value ...]` (`starjax theory` takes flags only).

Usage errors (bad arguments, unknown or mistyped config keys) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from starjax.config import load_config, to_yaml
from starjax.errors import ConfigError
from starjax.schema import Config

USAGE_ERROR = 2


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file (sparse overrides of the schema defaults)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.num_layers=2")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starjax", description="STaR and RL-STaR in JAX/Flax NNX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="print JAX, devices, processes, the mesh and the model a config builds")
    _config_args(info)
    info.add_argument("--forward", action="store_true", help="also create the model on the mesh and time one forward pass")
    info.add_argument("--batch", type=int, default=8, help="batch size for --forward (default 8)")
    info.add_argument("--length", type=int, default=128, help="sequence length for --forward (default 128)")
    info.add_argument(
        "--memory", action="store_true", help="also print the memory per device of the train step and of generation"
    )
    info.add_argument(
        "--devices", type=int, help="for --memory: size the mesh for this many devices (default: the devices JAX sees)"
    )
    info.add_argument(
        "--platform", choices=["cpu", "gpu", "tpu"], help="for --memory: the accelerator to size for (default: JAX's backend)"
    )
    sample = sub.add_parser("sample", help="generate completions for prompts with the configured model")
    _config_args(sample)
    source = sample.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", help="a prompt (repeatable); \\n in it stands for a newline")
    source.add_argument("--prompts-file", help='one prompt per line, or .jsonl records with a "prompt" field')
    sample.add_argument(
        "--checkpoint", help="model parameters saved by starjax (default: model.from_hf's, else a random init for smoke tests)"
    )
    sample.add_argument("--output", help="write JSONL results here instead of standard output")
    sft = sub.add_parser("sft", help="fine-tune on (prompt, completion) records; rerun to resume")
    _config_args(sft)
    star = sub.add_parser("star", help="run STaR iterations on a task; rerun the same command to resume")
    _config_args(star)
    star.add_argument(
        "--allow-config-change", action="store_true", help="resume a run directory whose saved config differs from this one"
    )
    star.add_argument(
        "--reference",
        metavar="FILE",
        help="metrics of a published run to compare with at the end "
        "(prints 'matches LABEL: yes/no'; `make demo` passes the README's)",
    )
    diagnose = sub.add_parser("diagnose", help="estimate a policy's per-step quality and the RL-STaR prediction for it")
    _config_args(diagnose)
    diagnose.add_argument("--checkpoint", help="policy parameters (default: the newest policy in run_dir, else its base)")
    diagnose.add_argument("--samples", type=int, default=16, help="samples per training question (default 16)")
    diagnose.add_argument("--questions", type=int, default=0, help="use at most this many training questions (0 = all)")
    diagnose.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0: the policy itself)")
    diagnose.add_argument("--iterations", type=int, default=5, help="iterations to predict (default 5)")
    diagnose.add_argument("--states", type=int, default=1000, help="M for tasks without a chain shape (default 1000)")
    diagnose.add_argument("--steps", type=int, default=3, help="T for tasks without a chain shape (default 3)")
    diagnose.add_argument(
        "--held-out",
        action="store_true",
        help="also sample the test questions and print greedy and sampled accuracy per difficulty on both splits",
    )
    imp = sub.add_parser("import-hf", help="convert a Hugging Face checkpoint directory to a starjax (Orbax) one")
    imp.add_argument("path", help="Hugging Face directory: config.json + *.safetensors (+ tokenizer files)")
    imp.add_argument("out", help="new directory: params/ (Orbax) + the config and tokenizer files; use as model.from_hf")
    imp.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.param_dtype=bfloat16 mesh.fsdp=8")
    exp = sub.add_parser("export-hf", help="write starjax parameters as a Hugging Face directory (config.json + safetensors)")
    exp.add_argument("config", help="the run's YAML config (its model, tokenizer and run_dir)")
    exp.add_argument("out", help="new directory for config.json, *.safetensors and tokenizer files")
    exp.add_argument("overrides", nargs="*", help="dotted overrides, e.g. run_dir=runs/gsm8k")
    exp.add_argument(
        "--checkpoint", help="parameters to export (default: the newest policy in run_dir, else its base, else model.from_hf)"
    )
    exp.add_argument("--dtype", default="bfloat16", help="tensor dtype written (default bfloat16)")
    exp.add_argument("--max-shard-size", default="5GB", help="split the weights into files of at most this size (default 5GB)")
    theory = sub.add_parser("theory", help="RL-STaR's tabular model: accuracy per STaR iteration, exact or simulated")
    theory.add_argument("--states", type=int, required=True, metavar="M", help="candidate next states per step (M >= 2)")
    theory.add_argument("--steps", type=int, required=True, metavar="T", help="reasoning steps per chain (T >= 1)")
    theory.add_argument(
        "--delta",
        type=float,
        action="append",
        required=True,
        metavar="D",
        help="pre-trained policy's d in [0, 1]: once for every step, or once per step in order",
    )
    theory.add_argument("--iterations", type=int, default=10, metavar="K", help="STaR iterations (default 10)")
    theory.add_argument("--samples", type=int, metavar="N", help="simulate N sampled chains per question per iteration")
    theory.add_argument("--seed", type=int, default=0, help="random seed for --samples (default 0)")
    theory.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    theory.add_argument("--plot", metavar="FILE.png", help="also write accuracy vs iteration to this PNG")
    return parser


def _resolve(args: argparse.Namespace, stream=sys.stdout) -> Config:
    if "=" in args.config and not args.config.endswith((".yaml", ".yml")):
        raise ConfigError(f"first argument {args.config!r} must be a YAML config file, before any key=value override")
    cfg = load_config(args.config, args.overrides)
    print("# resolved config\n" + to_yaml(cfg), file=stream, flush=True)
    return cfg


def cmd_info(args: argparse.Namespace) -> int:
    cfg = _resolve(args)
    # JAX is imported only now: device settings must be applied before it starts.
    import jax

    from starjax.model.summary import describe_model, time_forward
    from starjax.runtime import describe_runtime, sampler_rules, start

    rules = start(cfg)
    generation = [r.mesh for r in sampler_rules(cfg.sampler, rules)]
    for key, value in describe_runtime(rules.mesh, generation if generation != [rules.mesh] else ()):
        print(f"{key:>8}: {value}")
    if args.devices is not None and (args.devices <= 0 or not args.memory):
        raise ConfigError("--devices takes a positive device count, with --memory")
    if args.platform is not None and not args.memory:
        raise ConfigError("--platform goes with --memory")
    if cfg.model.vocab_size is None:
        print("   model: vocab_size comes from the tokenizer; set model.vocab_size to see the parameters")
        if args.forward or args.memory:
            raise ConfigError("--forward and --memory need model.vocab_size (or model.from_hf)")
        return 0
    print(describe_model(cfg.model, rules))
    if args.memory:
        from starjax.memory import estimate_memory, format_memory

        print(format_memory(estimate_memory(cfg, rules, args.devices or jax.device_count(), args.platform), cfg))
    if args.forward:
        if args.batch <= 0 or args.length <= 0:
            raise ConfigError("--batch and --length must be positive")
        t0 = time.perf_counter()
        result = time_forward(cfg.model, rules, cfg.seed, args.batch, args.length)
        print(
            f"forward: batch {args.batch} x length {args.length} -> logits {result.shape} sharded {result.spec}; "
            f"init+compile {result.compile_s:.2f}s, step {result.step_ms:.1f} ms "
            f"({result.tokens_per_s:,.0f} tokens/s), total {time.perf_counter() - t0:.1f}s"
        )
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from starjax.sampling.cli import run_sample

    return run_sample(_resolve(args, stream=sys.stderr), args)


def cmd_star(args: argparse.Namespace) -> int:
    from starjax.star.loop import run_star

    return run_star(_resolve(args, stream=sys.stderr), args.allow_config_change, args.reference)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from starjax.star.diagnose import run_diagnose

    return run_diagnose(_resolve(args, stream=sys.stderr), args)


def cmd_sft(args: argparse.Namespace) -> int:
    from starjax.training.sft import run_sft

    return run_sft(_resolve(args, stream=sys.stderr))


def cmd_import_hf(args: argparse.Namespace) -> int:
    from starjax.hf.cli import run_import

    return run_import(args)


def cmd_export_hf(args: argparse.Namespace) -> int:
    from starjax.hf.cli import run_export

    return run_export(args, _resolve(args, stream=sys.stderr))


def cmd_theory(args: argparse.Namespace) -> int:
    from starjax.theory.cli import run_theory

    return run_theory(args)


COMMANDS = {
    "info": cmd_info,
    "sample": cmd_sample,
    "sft": cmd_sft,
    "star": cmd_star,
    "diagnose": cmd_diagnose,
    "theory": cmd_theory,
    "import-hf": cmd_import_hf,
    "export-hf": cmd_export_hf,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"starjax: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as e:
        from starjax import multihost

        if multihost.is_multiprocess():
            multihost.exit_after_error(e)
        raise


if __name__ == "__main__":
    sys.exit(main())
