"""Host API: generate for a list of prompts (texts or token ids), in input order.

Two engines (`sampler.engine`). `continuous` (the default) keeps batch_size slots busy: a row
that ends frees its slot for the next queued prompt, and a prefix every prompt shares is
prefilled once (`continuous.py`, `scheduler.py`). `fixed` sorts prompts by length, left-pads
them to a prompt bucket and runs batches of rows that end together (`loop.py`). Either way a
whole STaR run compiles a bounded number of programs (per prompt bucket, new-token bucket and
row count), counted in `compilations`.
"""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from starjax import multihost
from starjax.errors import ConfigError
from starjax.model.kv_cache import KVCache
from starjax.model.transformer import Transformer, with_rules
from starjax.runtime import sampler_rules
from starjax.sampling import continuous
from starjax.sampling.loop import Finish, Generation, compile_generate
from starjax.sampling.scheduler import run_queue
from starjax.sampling.strategies import SamplingSettings
from starjax.schema import SamplerConfig
from starjax.tokenizer import Tokenizer
from starjax.validation import check_sample_rows, validate_sampler

MIN_NEW_CAP = 16


@dataclass
class Completion:
    text: str  # decoded generation, without the final stop token
    tokens: list[int]  # generated ids, the stop token included
    logprobs: list[float]  # per token, under the model's own distribution (temperature 1)
    finish: str  # "stop" (eos or a stop id) or "length"


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def new_token_cap(max_new_tokens: int) -> int:
    """The compiled new-token buffer for `max_new_tokens`: a power of two, at least MIN_NEW_CAP."""
    return max(MIN_NEW_CAP, _next_pow2(max_new_tokens))


class Sampler:
    """Generation with a fixed model; `update(model)` swaps in new weights without recompiling."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer, cfg: SamplerConfig):
        validate_sampler(cfg)
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.model_cfg = model.cfg
        # One (graphdef, params) per replica, each on its own mesh; replica 0 serves the
        # continuous engine and the API (self.graphdef, self.params, self.rules).
        self.meshes = sampler_rules(cfg, model.rules)
        self._replicas = [nnx.split(with_rules(model, rules)) for rules in self.meshes]
        self.rules = self.meshes[0]
        mesh = self.rules.mesh.shape
        self.data_parallel = mesh["data"] * mesh["fsdp"]
        self.compilations = 0
        self._count_lock = threading.Lock()  # replicas trace their programs in threads of their own
        self._programs: dict[tuple, Any] = {}  # fixed: a jitted function per replica; continuous: a dict of them
        # Per replica, one donated cache buffer, reused while consecutive calls share its shape.
        # Only one is kept: for a large model each bucket's cache can take gigabytes.
        self._cache: dict[int, tuple[tuple[int, int], KVCache]] = {}

    @property
    def graphdef(self) -> nnx.GraphDef:
        return self._replicas[0][0]

    @property
    def params(self) -> nnx.State:
        return self._replicas[0][1]

    def update(self, model: Transformer) -> None:
        """Uses `model`'s weights from now on (same architecture, so compiled programs are kept)."""
        self._replicas = [(g, nnx.state(with_rules(model, rules))) for (g, _), rules in zip(self._replicas, self.meshes)]

    def settings(self, **overrides) -> SamplerConfig:
        try:
            cfg = dataclasses.replace(self.cfg, **overrides)
        except TypeError as e:
            raise ConfigError(f"unknown sampler setting: {e}") from None
        validate_sampler(cfg)
        if (cfg.mesh, cfg.replicas) != (self.cfg.mesh, self.cfg.replicas):
            raise ConfigError("sampler.mesh and sampler.replicas are fixed when the sampler is built; build another Sampler")
        check_sample_rows(cfg.batch_size, cfg.num_samples, self.data_parallel)
        return cfg

    def generate(self, prompts: Sequence[str], seed: int = 0, **overrides) -> list[list[Completion]]:
        """num_samples completions for each text prompt, in input order."""
        ids = self.tokenizer.encode_batch(list(prompts), add_bos=True)
        return self.generate_ids(ids, seed, **overrides)

    def generate_ids(
        self, prompts: Sequence[Sequence[int]], seed: int = 0, limits: np.ndarray | Sequence | None = None, **overrides
    ) -> list[list[Completion]]:
        """As `generate`, for prompts already tokenized. `limits` [prompts] or [prompts,
        num_samples]: each row's own cap on new tokens (it ends there with finish "length"),
        besides sampler.max_new_tokens."""
        cfg = self.settings(**overrides)
        if not prompts:
            return []
        shape = (len(prompts), cfg.num_samples)
        limits = np.full(shape, cfg.max_new_tokens, np.int32) if limits is None else np.asarray(limits, np.int32)
        if limits.ndim == 1 and len(limits) == len(prompts):
            limits = np.repeat(limits[:, None], cfg.num_samples, axis=1)
        if limits.shape != shape or limits.min() < 1:
            raise ConfigError(
                f"limits must hold new-token caps >= 1 per prompt or per prompt and sample {shape}, got {limits.shape}"
            )
        buckets = sorted(cfg.prompt_buckets)
        lengths = [len(p) for p in prompts]
        for i, n in enumerate(lengths):
            if n == 0:
                raise ConfigError(f"prompt {i} is empty; give at least one token (e.g. bos)")
            if max(prompts[i]) >= self.model_cfg.vocab_size or min(prompts[i]) < 0:
                raise ConfigError(f"prompt {i} has token ids outside the model's vocabulary [0, {self.model_cfg.vocab_size})")
            if n > buckets[-1]:
                raise ConfigError(
                    f"prompt {i} has {n} tokens, more than the largest prompt bucket {buckets[-1]}; raise sampler.prompt_buckets"
                )
        cap = new_token_cap(cfg.max_new_tokens)
        settings = SamplingSettings.create(cfg, self.tokenizer.eos_id, self.tokenizer.extra_stop_ids)
        progress = tqdm(total=len(prompts), unit="prompt", desc="generate", disable=not cfg.progress or not multihost.is_lead())
        with progress as bar:
            if cfg.engine == "continuous":
                return self._continuous(prompts, limits, buckets, seed, cfg, settings, cap, bar.update)
            return self._fixed(prompts, lengths, limits, buckets, seed, cfg, settings, cap, bar.update)

    def slot_plan(self, cfg: SamplerConfig, num_prompts: int) -> tuple[int, int]:
        """The continuous engine's (slots, prompts per refill) for a call of `num_prompts`."""
        k = cfg.num_samples
        slots = min((cfg.batch_size // k) * k, self._prompt_rows(num_prompts * k, cfg.batch_size))
        return slots, max(1, min(cfg.refill_rows or cfg.batch_size // 4, slots) // k)

    def _continuous(self, prompts, limits, buckets, seed, cfg, settings, cap, on_prompt_done) -> list[list[Completion]]:
        k = cfg.num_samples
        slots, group = self.slot_plan(cfg, len(prompts))
        self._cache = {}  # the fixed path's buffers: free them while the slots live
        rows = run_queue(
            self.continuous_programs(cfg),
            self.params,
            self.rules,
            prompts,
            limits,
            buckets,
            seed=seed,
            slots=slots,
            group=group,
            num_samples=k,
            cap=cap,
            pad_id=self.tokenizer.pad_id,
            settings=settings,
            on_prompt_done=on_prompt_done,
        )
        stops = {int(t) for t in np.asarray(settings.stop_ids)}
        return [[self._completion(row.tokens, row.logprobs, row.tokens[-1] in stops) for row in per] for per in rows]

    def continuous_programs(self, cfg: SamplerConfig) -> dict[str, Callable]:
        """The continuous engine's jitted programs for these settings (compiled on first use)."""
        key = ("continuous", cfg.num_samples, cfg.top_k, cfg.fuse_weights)
        if key not in self._programs:
            self._programs[key] = continuous.compile_programs(
                self.graphdef,
                self.params,
                self.rules,
                self.model_cfg,
                num_samples=cfg.num_samples,
                top_k=cfg.top_k,
                pad_id=self.tokenizer.pad_id,
                fuse_weights=cfg.fuse_weights,
                on_compile=self._count_compile,
            )
        return self._programs[key]

    def _fixed(self, prompts, lengths, limits, buckets, seed, cfg, settings, cap, on_prompt_done) -> list[list[Completion]]:
        per_call = cfg.batch_size // cfg.num_samples
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        chunks: list[tuple[int, list[int]]] = []
        for i in order:
            bucket = next(b for b in buckets if b >= lengths[i])
            if not chunks or chunks[-1][0] != bucket or len(chunks[-1][1]) == per_call:
                chunks.append((bucket, []))
            chunks[-1][1].append(i)

        results: list[list[Completion]] = [[] for _ in prompts]
        base_key = jax.random.key(seed)
        todo = iter(enumerate(chunks))
        lock = threading.Lock()

        def serve(replica: int) -> None:
            """Replica `replica` takes the next chunk until none is left; a chunk's samples
            depend on its index and contents only, never on which replica ran it."""
            while True:
                with lock:
                    chunk_index, (bucket, members) = next(todo, (None, (None, None)))
                if chunk_index is None:
                    return
                run_chunk(replica, chunk_index, bucket, members)

        def run_chunk(replica: int, chunk_index: int, bucket: int, members: list[int]) -> None:
            rows = self._prompt_rows(len(members), per_call)
            tokens = np.full((rows, bucket), self.tokenizer.pad_id, np.int32)
            plen = np.zeros((rows,), np.int32)
            row_limits = np.ones((rows, cfg.num_samples), np.int32)
            for r, i in enumerate(members):
                tokens[r, bucket - lengths[i] :] = prompts[i]
                plen[r], row_limits[r] = lengths[i], limits[i]
            key = jax.random.fold_in(base_key, chunk_index)
            out = self._run(replica, tokens, plen, row_limits, key, settings, cap, cfg)
            for r, i in enumerate(members):
                results[i] = [
                    self._completion(
                        out.tokens[row, : out.lengths[row]], out.logprobs[row, : out.lengths[row]], out.finish[row] == Finish.STOP
                    )
                    for row in range(r * cfg.num_samples, (r + 1) * cfg.num_samples)
                ]
            with lock:
                on_prompt_done(len(members))

        if len(self.meshes) == 1:
            serve(0)
        else:  # a thread per replica: XLA runs each call with the GIL released
            with ThreadPoolExecutor(len(self.meshes)) as pool:
                for done in [pool.submit(serve, r) for r in range(len(self.meshes))]:
                    done.result()
        return results

    def _prompt_rows(self, count: int, per_call: int) -> int:
        """The row bucket for `count` prompts: data-parallel size x a power of two, at most per_call."""
        dp = self.data_parallel
        return min(dp * _next_pow2(-(-count // dp)), per_call)

    def _run(self, replica: int, tokens, plen, row_limits, key, settings, cap, cfg) -> Generation:
        rows = tokens.shape[0] * cfg.num_samples
        cache_key = (rows, tokens.shape[1] + cap)
        program_key = (replica, cap, cfg.num_samples, cfg.top_k, cfg.fuse_weights, cfg.cache_growth)
        graphdef, params = self._replicas[replica]
        rules = self.meshes[replica]
        if program_key not in self._programs:
            self._programs[program_key] = compile_generate(
                graphdef,
                params,
                rules,
                self.model_cfg.num_layers,
                max_new_cap=cap,
                num_samples=cfg.num_samples,
                top_k=cfg.top_k,
                pad_id=self.tokenizer.pad_id,
                on_compile=self._count_compile,
                fuse_weights=cfg.fuse_weights,
                cache_growth=cfg.cache_growth,
            )
        held = self._cache.pop(replica, None)  # free an old buffer before allocating the new one
        cache = held[1] if held is not None and held[0] == cache_key else KVCache.init(self.model_cfg, rules, *cache_key)
        # Each process supplies only its devices' rows, and every process gets every result back.
        tokens = multihost.global_array(tokens, rules.sharding(("batch", None)))
        plen = multihost.global_array(plen, rules.sharding(("batch",)))
        row_limits = multihost.global_array(row_limits, rules.sharding(("batch", None)))
        out, cache = self._programs[program_key](params, cache, tokens, plen, row_limits, key, settings)
        self._cache[replica] = (cache_key, cache)  # donated in, handed back
        return multihost.to_host(out)

    def _count_compile(self) -> None:
        with self._count_lock:
            self.compilations += 1

    def _completion(self, tokens: np.ndarray, logprobs: np.ndarray, stopped: bool) -> Completion:
        ids = [int(t) for t in tokens]
        return Completion(
            text=self.tokenizer.decode(ids[:-1] if stopped else ids),
            tokens=ids,
            logprobs=[float(x) for x in logprobs],
            finish="stop" if stopped else "length",
        )


class SharedSampler:
    """One Sampler for successive weights of one architecture: built for the first model it is
    given and updated with each later one, so the programs it compiled serve them all (STaR's
    evaluation runs the greedy program pre-training's checks compiled)."""

    def __init__(self, tokenizer: Tokenizer, cfg: SamplerConfig) -> None:
        self.tokenizer, self.cfg = tokenizer, cfg
        self.sampler: Sampler | None = None

    def __call__(self, model: Transformer) -> Sampler:
        if self.sampler is None:
            self.sampler = Sampler(model, self.tokenizer, self.cfg)
        else:
            self.sampler.update(model)
        return self.sampler
