"""Checks of relations between config values that the schema's types cannot express.

Each task, scorer and selector checks its own section (a `check()` method on its settings
dataclass, called by the loader for the ones a run uses).
"""

from __future__ import annotations

from starjax.errors import ConfigError
from starjax.host_memory import SETTINGS as HOST_MALLOC_SETTINGS
from starjax.schema import (
    ACTIVATIONS,
    DTYPES,
    MAX_STOP_IDS,
    MESH_AXES,
    Config,
    DistributedConfig,
    MeshConfig,
    SamplerConfig,
    TrainConfig,
)


def validate(cfg: Config) -> None:
    """Checks relations between values that the type system cannot express."""
    m = cfg.model
    for key in ("num_layers", "d_model", "num_heads", "num_kv_heads", "mlp_dim"):
        if getattr(m, key) <= 0:
            raise ConfigError(f"model.{key}={getattr(m, key)} must be positive")
    if m.vocab_size is not None and m.vocab_size <= 0:
        raise ConfigError(f"model.vocab_size={m.vocab_size} must be positive (or null to use the tokenizer's)")
    if m.num_heads % m.num_kv_heads:
        raise ConfigError(f"model.num_kv_heads={m.num_kv_heads} must divide model.num_heads={m.num_heads}")
    if m.head_dim is None and m.d_model % m.num_heads:
        raise ConfigError(f"model.d_model={m.d_model} is not divisible by model.num_heads={m.num_heads}; set model.head_dim")
    if (m.head_dim or m.d_model // m.num_heads) % 2:
        raise ConfigError("rotary embeddings need an even head dimension; change model.head_dim")
    if m.activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation={m.activation!r} must be one of {list(ACTIVATIONS)}")
    if m.rope_scaling is not None and m.rope_scaling.rope_type not in ("llama3", "linear"):
        raise ConfigError(f"model.rope_scaling.rope_type={m.rope_scaling.rope_type!r} must be 'llama3' or 'linear'")
    if m.attention not in ("einsum", "dot_product"):
        raise ConfigError(f"model.attention={m.attention!r} must be 'einsum' or 'dot_product'")
    for key in ("param_dtype", "compute_dtype"):
        if getattr(m, key) not in DTYPES:
            raise ConfigError(f"model.{key}={getattr(m, key)!r} must be one of {list(DTYPES)}")
    validate_mesh(cfg.mesh, "mesh")
    if cfg.sampler.mesh is not None:
        validate_mesh(cfg.sampler.mesh, "sampler.mesh")
    validate_sampler(cfg.sampler)
    validate_train(cfg.train)
    validate_star(cfg)
    if cfg.runtime.num_cpu_devices < 0:
        raise ConfigError(f"runtime.num_cpu_devices={cfg.runtime.num_cpu_devices} must be >= 0")
    if cfg.runtime.platform not in (None, "cpu", "gpu", "cuda", "rocm", "tpu"):
        raise ConfigError(f"runtime.platform={cfg.runtime.platform!r} must be null, cpu, gpu, cuda, rocm or tpu")
    if cfg.runtime.host_malloc not in HOST_MALLOC_SETTINGS:
        raise ConfigError(f"runtime.host_malloc={cfg.runtime.host_malloc!r} must be one of {', '.join(HOST_MALLOC_SETTINGS)}")
    validate_distributed(cfg.runtime.distributed)
    if cfg.logging.wandb.mode not in ("online", "offline"):
        raise ConfigError(f"logging.wandb.mode={cfg.logging.wandb.mode!r} must be online or offline")


def validate_mesh(mesh: MeshConfig, key: str) -> None:
    sizes = [getattr(mesh, a) for a in MESH_AXES]
    if any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"{key} sizes must be positive or -1, got data={sizes[0]} fsdp={sizes[1]} tensor={sizes[2]}")
    if sizes.count(-1) > 1:
        raise ConfigError(f"at most one of {key}.data, {key}.fsdp, {key}.tensor may be -1")
    for name, axes in mesh.rules.items():
        for axis in axes:
            if axis not in MESH_AXES:
                raise ConfigError(f"{key}.rules.{name} names mesh axis {axis!r}; valid axes are {list(MESH_AXES)}")
        if len(set(axes)) != len(axes):
            raise ConfigError(f"{key}.rules.{name}={axes} repeats a mesh axis")


def validate_distributed(d: DistributedConfig) -> None:
    if d.mode not in ("off", "auto", "explicit"):
        raise ConfigError(f"runtime.distributed.mode={d.mode!r} must be off, auto or explicit")
    if d.mode == "explicit":
        missing = [k for k in ("coordinator_address", "num_processes", "process_id") if getattr(d, k) is None]
        if missing:
            raise ConfigError(f"runtime.distributed.mode=explicit needs runtime.distributed.{missing[0]}")
        if d.num_processes < 1 or not 0 <= d.process_id < d.num_processes:
            raise ConfigError(f"runtime.distributed: process_id={d.process_id} must be in [0, num_processes={d.num_processes})")
        if ":" not in d.coordinator_address:
            raise ConfigError(f"runtime.distributed.coordinator_address={d.coordinator_address!r} must be host:port")
    if d.initialization_timeout < 1 or d.heartbeat_timeout < 1:
        raise ConfigError("runtime.distributed.initialization_timeout and heartbeat_timeout must be >= 1 second")


SAMPLER_ENGINES = ("continuous", "fixed")
KEEP_POLICIES = ("all", "last", "best")


def validate_sampler(s: SamplerConfig) -> None:
    """Sampling settings are checked here and again by the sampler for API callers."""
    if s.temperature < 0:
        raise ConfigError(f"sampler.temperature={s.temperature} must be >= 0 (0 = greedy)")
    if not 0 < s.top_p <= 1:
        raise ConfigError(f"sampler.top_p={s.top_p} must be in (0, 1] (1 = off)")
    if s.top_k < 0:
        raise ConfigError(f"sampler.top_k={s.top_k} must be >= 0 (0 = off)")
    for key in ("batch_size", "max_new_tokens", "num_samples"):
        if getattr(s, key) < 1:
            raise ConfigError(f"sampler.{key}={getattr(s, key)} must be >= 1")
    if s.num_samples > s.batch_size:
        raise ConfigError(f"sampler.num_samples={s.num_samples} exceeds sampler.batch_size={s.batch_size}")
    if not s.prompt_buckets or any(b < 1 for b in s.prompt_buckets):
        raise ConfigError(f"sampler.prompt_buckets={s.prompt_buckets} must be a non-empty list of positive lengths")
    if s.engine not in SAMPLER_ENGINES:
        raise ConfigError(f"sampler.engine={s.engine!r} is not one of {', '.join(SAMPLER_ENGINES)}")
    if s.replicas < 1:
        raise ConfigError(f"sampler.replicas={s.replicas} must be >= 1")
    if s.replicas > 1 and s.engine != "fixed":
        raise ConfigError(
            f"sampler.replicas={s.replicas} needs sampler.engine=fixed (the continuous engine's batch is its slots)"
        )
    if s.cache_growth < 0:
        raise ConfigError(f"sampler.cache_growth={s.cache_growth} must be >= 0 (0 = off)")
    if s.refill_rows < 0:
        raise ConfigError(f"sampler.refill_rows={s.refill_rows} must be >= 0 (0 = batch_size // 4)")
    if len(s.stop_ids) > MAX_STOP_IDS - 1:
        raise ConfigError(f"sampler.stop_ids has {len(s.stop_ids)} ids; at most {MAX_STOP_IDS - 1} (eos is added)")


def check_sample_rows(batch_size: int, num_samples: int, data_parallel: int, key: str = "num_samples") -> None:
    """A sampler call holds batch_size // num_samples prompts, split evenly over data x fsdp."""
    if num_samples > batch_size:
        raise ConfigError(f"{key}={num_samples} exceeds sampler.batch_size={batch_size}; raise sampler.batch_size or lower {key}")
    per_call = batch_size // num_samples
    if per_call % data_parallel:
        raise ConfigError(
            f"sampler.batch_size={batch_size} with {key}={num_samples} gives {per_call} prompts per call, "
            f"not a multiple of the mesh's data x fsdp = {data_parallel}"
        )


def validate_star_sampling(cfg: Config, data_parallel: int) -> None:
    """Every sampler call a STaR run makes fits the batch and the mesh (checked before any compute)."""
    s = cfg.star
    calls = [("star.num_samples", s.num_samples), ("evaluation", 1), ("star.eval_samples", s.eval_samples)]
    if s.rationalize:
        calls.append(
            ("star.rationalize_samples" if s.rationalize_samples else "star.num_samples", s.rationalize_samples or s.num_samples)
        )
    if s.solved_samples:
        calls.append(("star.solved_samples", s.solved_samples))
    for key, n in calls:
        check_sample_rows(cfg.sampler.batch_size, n, data_parallel, key)


def validate_train(t: TrainConfig) -> None:
    for key in ("batch_size", "seq_len", "micro_batches", "steps"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key}={getattr(t, key)} must be >= 1")
    if t.batch_size % t.micro_batches:
        raise ConfigError(f"train.micro_batches={t.micro_batches} must divide train.batch_size={t.batch_size}")
    if t.schedule not in ("constant", "cosine"):
        raise ConfigError(f"train.schedule={t.schedule!r} must be 'constant' or 'cosine'")
    if t.moment_dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"train.moment_dtype={t.moment_dtype!r} must be 'float32' or 'bfloat16'")
    if t.remat not in ("none", "full", "dots_saveable"):
        raise ConfigError(f"train.remat={t.remat!r} must be one of none, full, dots_saveable")
    if t.lora_rank < 0 or (t.lora_rank and t.lora_alpha <= 0):
        raise ConfigError(f"train.lora_rank={t.lora_rank} must be >= 0 (0 = full fine-tune) and train.lora_alpha > 0")
    unknown = [x for x in t.lora_targets if x not in ("q", "k", "v", "o", "gate", "up", "down")]
    if t.lora_rank and (unknown or not t.lora_targets):
        raise ConfigError(f"train.lora_targets={list(t.lora_targets)}: name some of q, k, v, o, gate, up, down")
    if t.checkpoint_every < 1 or t.keep_checkpoints < 1 or t.eval_every < 0:
        raise ConfigError("train.checkpoint_every and train.keep_checkpoints must be >= 1, train.eval_every >= 0")
    if t.learning_rate <= 0 or t.warmup_steps < 0 or t.grad_clip <= 0 or t.weight_decay < 0:
        raise ConfigError("train.learning_rate and train.grad_clip must be > 0; warmup_steps and weight_decay >= 0")


def validate_star(cfg: Config) -> None:
    s = cfg.star
    for key in ("iterations", "num_samples", "first_steps", "eval_samples"):
        if getattr(s, key) < 1:
            raise ConfigError(f"star.{key}={getattr(s, key)} must be >= 1")
    if s.temperature < 0 or s.eval_temperature < 0 or s.step_growth < 0 or s.test_limit < 0:
        raise ConfigError("star.temperature, star.eval_temperature, star.step_growth and star.test_limit must be >= 0")
    for key in ("rationalize_samples", "solved_samples"):
        if getattr(s, key) is not None and getattr(s, key) < 1:
            raise ConfigError(f"star.{key}={getattr(s, key)} must be >= 1 (or null: star.num_samples)")
    if s.train_prompt not in ("bare", "few_shot"):
        raise ConfigError(f"star.train_prompt={s.train_prompt!r}: use bare (the question alone) or few_shot")
    if s.keep_policies not in KEEP_POLICIES:
        raise ConfigError(f"star.keep_policies={s.keep_policies!r} is not one of {', '.join(KEEP_POLICIES)}")
    if s.eval_samples > 1 and s.eval_temperature == 0:
        raise ConfigError(
            f"star.eval_samples={s.eval_samples} with star.eval_temperature=0 gives identical samples; set star.eval_temperature"
        )
    if s.num_samples > 1 and s.temperature == 0:
        raise ConfigError(f"star.num_samples={s.num_samples} with star.temperature=0 gives identical samples; set a temperature")
    p = cfg.pretrain
    if (
        p.steps < 0
        or p.learning_rate <= 0
        or (p.batch_size or 1) < 1
        or (p.seq_len or 1) < 1
        or p.warmup_steps < 0
        or p.warm_steps < 0
    ):
        raise ConfigError(
            "pretrain.steps, warmup_steps and warm_steps must be >= 0, pretrain.learning_rate > 0 "
            "and pretrain.batch_size and seq_len >= 1"
        )
    if p.warm_learning_rate is not None and p.warm_learning_rate <= 0:
        raise ConfigError(f"pretrain.warm_learning_rate={p.warm_learning_rate} must be > 0 (or null: pretrain.learning_rate)")
    if p.stop_difficulty is not None and not (0 < p.stop_accuracy <= 1 and p.stop_every >= 1 and p.stop_questions >= 1):
        raise ConfigError("pretrain.stop_accuracy must be in (0, 1] and pretrain.stop_every and stop_questions >= 1")
    if p.stop_before and p.stop_difficulty is None:
        raise ConfigError("pretrain.stop_before=true needs pretrain.stop_difficulty: the bar it keeps the base below")
