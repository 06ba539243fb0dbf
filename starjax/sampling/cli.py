"""`starjax sample`: prompts in, JSONL completions out (model from a checkpoint or random init)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from starjax.data_files import read_jsonl
from starjax.errors import ConfigError
from starjax.log import log
from starjax.schema import Config


def read_prompts(args: argparse.Namespace) -> list[str]:
    if args.prompt:
        return [p.replace("\\n", "\n") for p in args.prompt]
    path = Path(args.prompts_file)
    if not path.is_file():
        raise ConfigError(f"prompts file {str(path)!r} not found")
    if path.suffix != ".jsonl":
        prompts = [line.replace("\\n", "\n") for line in path.read_text().splitlines() if line.strip()]
    else:
        prompts = []
        for n, record in read_jsonl(path, "prompts file"):
            prompt = record if isinstance(record, str) else record.get("prompt") if isinstance(record, dict) else None
            if not isinstance(prompt, str):
                raise ConfigError(f'{path}:{n} is not a JSON string or an object with a "prompt" field')
            prompts.append(prompt)
    if not prompts:
        raise ConfigError(f"prompts file {str(path)!r} holds no prompt")
    return prompts


def run_sample(cfg: Config, args: argparse.Namespace) -> int:
    prompts = read_prompts(args)
    from starjax.runtime import start
    from starjax.sampling.engine import Sampler
    from starjax.sources import load_model, load_run_tokenizer, with_vocab

    tokenizer = load_run_tokenizer(cfg, "sample")
    cfg = with_vocab(cfg, tokenizer)
    rules = start(cfg)
    if not args.checkpoint:
        log("no --checkpoint: sampling from a randomly initialised model")
    model = load_model(args.checkpoint, cfg.model, rules, cfg.seed)
    sampler = Sampler(model, tokenizer, cfg.sampler)

    start = time.perf_counter()
    results = sampler.generate(prompts, seed=cfg.seed)
    elapsed = time.perf_counter() - start
    out = open(args.output, "w") if args.output else sys.stdout
    try:
        for i, (prompt, samples) in enumerate(zip(prompts, results)):
            record = {
                "index": i,
                "prompt": prompt,
                "samples": [
                    {"text": c.text, "finish": c.finish, "num_tokens": len(c.tokens), "logprob": sum(c.logprobs)} for c in samples
                ],
            }
            out.write(json.dumps(record) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    generated = sum(len(c.tokens) for samples in results for c in samples)
    log(
        f"{len(prompts)} prompts, {generated} tokens in {elapsed:.2f}s "
        f"({generated / elapsed:,.0f} tokens/s incl. compile), {sampler.compilations} compilation(s)"
    )
    return 0
