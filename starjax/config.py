"""Typed run configuration: the one source of defaults.

A run's config is built as: schema defaults <- model preset <- YAML file <- `key=value`
overrides from the command line. OmegaConf does the loading, merging and type conversion;
this module turns its exceptions into one-line messages a person can act on.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from starjax.model.presets import PRESETS

MESH_AXES = ("data", "fsdp", "tensor")
DTYPES = ("float32", "bfloat16")

# Logical axis -> mesh axes. Parameters and activations use different logical names so that,
# e.g., weights can be FSDP-sharded over "embed" while activations keep "embed" whole.
DEFAULT_RULES: Dict[str, List[str]] = {
    # parameters
    "vocab": ["tensor"],
    "embed": ["fsdp"],
    "heads": ["tensor"],
    "kv_heads": ["tensor"],
    "head_dim": [],
    "mlp": ["tensor"],
    "norm": [],
    # activations and caches
    "batch": ["data", "fsdp"],
    "length": [],
    "cache_length": [],
    "act_embed": [],
    "act_heads": ["tensor"],
    "act_kv_heads": ["tensor"],
    "act_mlp": ["tensor"],
    "act_vocab": ["tensor"],
}


class ConfigError(ValueError):
    """A config problem, described in one line that names the key and the fix."""


@dataclass
class DistributedConfig:
    # off: one process. auto: jax.distributed.initialize()'s own detection (Cloud TPU VMs, SLURM,
    # Open MPI), or the STARJAX_COORDINATOR / STARJAX_NUM_PROCESSES / STARJAX_PROCESS_ID
    # [/ STARJAX_LOCAL_DEVICE_IDS] variables when set (scripts/launch_hosts.sh). explicit: the keys below.
    mode: str = "off"
    coordinator_address: Optional[str] = None  # host:port of process 0
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    # Devices this process drives (e.g. one GPU per process); null = all it sees.
    local_device_ids: Optional[List[int]] = None
    # Seconds to wait for every process at start-up, and without a heartbeat before the others
    # give up on a dead process and exit with a message (JAX's own detection: 3x as long).
    initialization_timeout: int = 300
    heartbeat_timeout: int = 60


@dataclass
class RuntimeConfig:
    # >0: number of fake CPU devices to create (local runs and tests); must be set before JAX starts.
    num_cpu_devices: int = 0
    # Force a JAX platform ("cpu", "gpu", "tpu"); null keeps JAX's own choice.
    platform: Optional[str] = None
    # One process per host (or per GPU) on one global mesh: JAX's multi-controller runtime (docs/multihost.md).
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


@dataclass
class MeshConfig:
    # Devices along each mesh axis; one axis may be -1 = all remaining devices.
    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    rules: Dict[str, List[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_RULES.items()})


@dataclass
class RopeScalingConfig:
    # "llama3" (Llama 3.1+) or "linear"; other Hugging Face rope types are refused at import.
    rope_type: str = "llama3"
    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


ACTIVATIONS = ("silu", "gelu_tanh")


@dataclass
class ModelConfig:
    # Named size preset (see starjax/model/presets.py); explicit keys override its values.
    preset: Optional[str] = None
    # null: taken from the tokenizer when the model is built.
    vocab_size: Optional[int] = None
    num_layers: int = 4
    d_model: int = 256
    num_heads: int = 4
    num_kv_heads: int = 2
    # null: d_model // num_heads.
    head_dim: Optional[int] = None
    mlp_dim: int = 1024
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    qkv_bias: bool = False
    init_std: float = 0.02
    param_dtype: str = "float32"
    compute_dtype: str = "float32"
    # Architecture variants real checkpoints need (model.from_hf sets them): the gated MLP's
    # activation (silu = SwiGLU; gelu_tanh = Gemma's GeGLU), embeddings times sqrt(d_model)
    # (Gemma), RMSNorm as x * (norm_offset + scale) (Gemma: 1), rotary scaling (Llama 3.1+).
    activation: str = "silu"
    scale_embeddings: bool = False
    norm_offset: float = 0.0
    rope_scaling: Optional[RopeScalingConfig] = None
    # A Hugging Face checkpoint directory (config.json + safetensors, or an `import-hf` output):
    # its config.json sets the architecture keys above, it gives the initial parameters (in
    # param_dtype) wherever a random init would be used, and its tokenizer when tokenizer.path is null.
    from_hf: Optional[str] = None


@dataclass
class TokenizerConfig:
    # A SentencePiece .model file; tasks that train their own tokenizer leave it null.
    path: Optional[str] = None


@dataclass
class SamplerConfig:
    # Rows per compiled call (prompts x num_samples); smaller final batches use a
    # power-of-two bucket. Must be a multiple of mesh data x fsdp.
    batch_size: int = 32
    # Prompts are left-padded to the smallest bucket that fits; longer prompts are an error.
    prompt_buckets: List[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    max_new_tokens: int = 128
    # 0 = greedy. temperature, top_p, max_new_tokens and stop ids never cause a recompile.
    temperature: float = 1.0
    # 0 = off. A static shape: each distinct value compiles its own program.
    top_k: int = 0
    # 1.0 = off; otherwise sample from the smallest set of tokens holding this much mass.
    top_p: float = 1.0
    num_samples: int = 1
    # Token ids that end a row besides the tokenizer's eos.
    stop_ids: List[int] = field(default_factory=list)
    # Show a progress bar over prompts.
    progress: bool = True
    # Decode with q/k/v and gate/up concatenated, one product each, and on the CPU with large
    # weights transposed (Transformer.fused_weights): faster, at the cost of a per-call copy of
    # about 2/3 of the weights (on the CPU up to all of them). Turn off when memory is tight.
    fuse_weights: bool = True


@dataclass
class TrainConfig:
    # Rows per optimizer step (global, all processes); each row is seq_len packed tokens.
    batch_size: int = 32
    seq_len: int = 128
    # The step's batch is split into this many micro-batches, accumulated with lax.scan.
    micro_batches: int = 1
    steps: int = 100
    learning_rate: float = 3e-4
    warmup_steps: int = 10
    # "constant" or "cosine" (to 10% of learning_rate at `steps`) after warmup.
    schedule: str = "constant"
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    grad_clip: float = 1.0
    # Parameters to start from (a directory written by save_params); null = random init.
    init_from: Optional[str] = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    # Held-out loss every this many steps (0 = only at the end).
    eval_every: int = 0


@dataclass
class DataConfig:
    # Training records: a JSONL file, or "tfds:NAME" / "tfds:NAME/SPLIT" (split defaults to train).
    train: Optional[str] = None
    # Held-out records in the same forms; null holds out `eval_fraction` of the training records.
    eval: Optional[str] = None
    eval_fraction: float = 0.05
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    # Where locally prepared TFDS datasets live (null: TFDS's default).
    tfds_data_dir: Optional[str] = None


@dataclass
class AdditionConfig:
    min_digits: int = 1
    max_digits: int = 5
    train_size: int = 1000
    test_size: int = 200
    # Base-model seed data: scratchpads of up to seed_max_digits digits, a seed_long_fraction of
    # them longer (up to max_digits; each longer length seed_long_decay times as likely as the
    # one before: 1 = uniform), a seed_hint_fraction of all with the answer as a hint.
    seed_size: int = 4000
    seed_max_digits: int = 2
    seed_long_fraction: float = 0.02
    seed_long_decay: float = 1.0
    # The longest seed sums (null: max_digits); below max_digits the base never sees the longest.
    seed_long_max_digits: Optional[int] = None
    seed_hint_fraction: float = 0.3


@dataclass
class ZipChainConfig:
    # Two numbers of `bits` binary digits; one digit pair moves per step, so T = bits steps.
    bits: int = 3
    # Base-model seed data: trajectories sampled from the noisy kernel (correct step w.p.
    # (1 + (M-1) d_t) / M), `seed_per_question` per question; one delta, or one per step.
    seed_delta: List[float] = field(default_factory=lambda: [0.2])
    seed_per_question: int = 64
    # Train = test = all 4^bits pairs (as in RL-STaR) unless test_fraction > 0.
    test_fraction: float = 0.0
    # true: the policy sees only the current state at each step, as in the tabular model; each
    # step is its own generation from a prompt holding the previous state, and every chain
    # trains as T one-step records. false: one completion of the whole chain, with the question
    # and every earlier state in context (which lets a transformer skip the chain: docs/rlstar.md).
    markov: bool = False


@dataclass
class FileTaskConfig:
    # jsonl: a file of {question, answer[, rationale][, difficulty]} rows; tfds: a dataset name
    # (NAME or NAME/CONFIG, prepared locally under data.tfds_data_dir or registered).
    train: Optional[str] = None
    # jsonl: the test file, null = hold out `test_fraction` of the training rows (by question hash).
    # tfds: another dataset to take test_split from, null = the train dataset.
    test: Optional[str] = None
    test_fraction: float = 0.1
    # tfds only: splits to read; test_split null = hold out `test_fraction` of train_split.
    train_split: str = "train"
    test_split: Optional[str] = "test"
    # The rows' own names for question/answer/rationale/difficulty (and choices: commonsenseqa).
    fields: Dict[str, str] = field(
        default_factory=lambda: {"question": "question", "answer": "answer", "rationale": "rationale", "difficulty": "difficulty"}
    )
    # Row and prompt layout: plain (`Question:` / `Answer:`), or the STaR paper's gsm8k or
    # commonsenseqa (docs/tasks.md).
    format: str = "plain"
    # exact, numeric, choice, or package.module:function(predicted, gold) -> bool;
    # null = the format's own: plain exact, gsm8k numeric, commonsenseqa choice.
    verifier: Optional[str] = None
    # Problems with a rationale shown before each question: the first N training problems, or of
    # few_shot_file when set (there 0 = all of the file's exemplars: it is written for the purpose).
    few_shot: int = 0
    # A JSONL file of exemplars with rationales, in the same format and field names as the data
    # (the STaR paper's hand-written CommonsenseQA rationales); null = use training problems.
    few_shot_file: Optional[str] = None


@dataclass
class TaskConfig:
    # addition, zip_chain, jsonl or tfds.
    name: str = "addition"
    # Where built-in synthetic datasets are prepared (TFDS, array_record) and cached.
    data_dir: str = "~/.cache/starjax/tfds"
    addition: AdditionConfig = field(default_factory=AdditionConfig)
    zip_chain: ZipChainConfig = field(default_factory=ZipChainConfig)
    jsonl: FileTaskConfig = field(default_factory=FileTaskConfig)
    tfds: FileTaskConfig = field(default_factory=FileTaskConfig)


@dataclass
class PretrainConfig:
    # Steps of base-model pre-training on the task's seed data (0 = none: use star.base or random init).
    steps: int = 0
    learning_rate: float = 1e-3
    # null: train.batch_size / train.seq_len.
    batch_size: Optional[int] = None
    seq_len: Optional[int] = None
    warmup_steps: int = 10
    # Steps on the gold targets of the training questions before the seed data (0 = none): a
    # small model learns the task's moves from clean data in a few steps and then fits the
    # noisy seed data's odds, which it rarely finds from scratch (docs/rlstar.md).
    warm_steps: int = 0
    # null: pretrain.learning_rate.
    warm_learning_rate: Optional[float] = None


@dataclass
class StarConfig:
    iterations: int = 5
    # Parameters of the base model (save_params directory); null = pre-train (pretrain.steps) or random init.
    base: Optional[str] = None
    # Prompt failures again with the answer as a hint; keep hinted rationales that reach it.
    rationalize: bool = True
    # Samples per question while generating (1 with temperature 0 = greedy, as in STaR).
    num_samples: int = 1
    temperature: float = 0.0
    # Hinted samples per failed question (null: num_samples).
    rationalize_samples: Optional[int] = None
    # A question is solved (kept, not rationalized, counted in train_accuracy) only by a sample
    # whose every intermediate step checks, not only by one that reaches the answer (tasks with
    # step checks: addition, zip_chain). STaR as published checks the answer only.
    verify_steps: bool = False
    # The prompt of a kept training record: the bare question (bare, as STaR's code stores them)
    # or the question after the few-shot exemplars the samples were drawn with (few_shot).
    train_prompt: str = "bare"
    # Cap on kept rationales per question, and drop duplicate rationales (ReST-EM / RFT).
    max_kept_per_question: int = 1
    dedupe: bool = True
    # Fill that cap with the most often drawn correct rationales first, not the first drawn: with
    # several samples, a rationale the model keeps producing is more often sound than one that
    # reaches the answer through a slip. Not in STaR (which samples once).
    prefer_frequent: bool = False
    # Keep every earlier iteration's rationales too, the per-question cap applying to the union.
    accumulate: bool = False
    # Fine-tune from the base model every iteration (STaR); false continues from the last one.
    restart_from_base: bool = True
    # Fine-tune steps: first_steps in iteration 1, growing by step_growth per iteration.
    first_steps: int = 40
    step_growth: float = 0.2
    # Test-set evaluation: greedy accuracy always; with eval_samples > 1 also pass@k and
    # majority vote over eval_samples samples at eval_temperature.
    eval_samples: int = 1
    eval_temperature: float = 0.7
    # Iteration-0 base evaluation and per-iteration test evaluation on at most this many test problems (0 = all).
    test_limit: int = 0


@dataclass
class Config:
    seed: int = 0
    run_dir: str = "runs/default"
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    star: StarConfig = field(default_factory=StarConfig)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Builds a validated Config from an optional YAML file and `key=value` overrides."""
    file_cfg = _load_yaml(path) if path is not None else OmegaConf.create({})
    cli_cfg = _parse_overrides(overrides)
    preset = OmegaConf.select(OmegaConf.merge(file_cfg, cli_cfg), "model.preset", default=None)
    layers = [OmegaConf.structured(Config)]
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"model.preset={preset!r} is unknown; choose one of {sorted(PRESETS)}")
        layers.append(OmegaConf.create({"model": PRESETS[preset]}))
    try:
        merged = OmegaConf.merge(*layers, file_cfg, cli_cfg)
        cfg = typing.cast(Config, OmegaConf.to_object(merged))
    except ConfigKeyError as e:
        raise ConfigError(_unknown_key_message(e.full_key)) from None
    except ValidationError as e:
        raise ConfigError(_type_message(e)) from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid config: {e.msg}") from None
    if cfg.model.from_hf is not None:
        from starjax.hf.config import apply_hf_architecture  # reads one small JSON file

        apply_hf_architecture(cfg.model)
    validate(cfg)
    return cfg


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Config, run_dir: str | Path) -> Path:
    """Writes the resolved config to RUN_DIR/config.yaml (every run keeps its config)."""
    out = Path(run_dir) / "config.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_yaml(cfg))
    return out


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
    for key in ("param_dtype", "compute_dtype"):
        if getattr(m, key) not in DTYPES:
            raise ConfigError(f"model.{key}={getattr(m, key)!r} must be one of {list(DTYPES)}")
    sizes = [getattr(cfg.mesh, a) for a in MESH_AXES]
    if any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"mesh sizes must be positive or -1, got data={sizes[0]} fsdp={sizes[1]} tensor={sizes[2]}")
    if sizes.count(-1) > 1:
        raise ConfigError("at most one of mesh.data, mesh.fsdp, mesh.tensor may be -1")
    for name, axes in cfg.mesh.rules.items():
        for axis in axes:
            if axis not in MESH_AXES:
                raise ConfigError(f"mesh.rules.{name} names mesh axis {axis!r}; valid axes are {list(MESH_AXES)}")
        if len(set(axes)) != len(axes):
            raise ConfigError(f"mesh.rules.{name}={axes} repeats a mesh axis")
    validate_sampler(cfg.sampler)
    validate_train(cfg.train)
    validate_star(cfg)
    if cfg.runtime.num_cpu_devices < 0:
        raise ConfigError(f"runtime.num_cpu_devices={cfg.runtime.num_cpu_devices} must be >= 0")
    if cfg.runtime.platform not in (None, "cpu", "gpu", "cuda", "rocm", "tpu"):
        raise ConfigError(f"runtime.platform={cfg.runtime.platform!r} must be null, cpu, gpu, cuda, rocm or tpu")
    validate_distributed(cfg.runtime.distributed)


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


MAX_STOP_IDS = 8  # stop ids travel as a fixed-size traced array


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
    for key, n in calls:
        check_sample_rows(cfg.sampler.batch_size, n, data_parallel, key)


def check_run_dir(cfg: Config) -> None:
    """For the commands that write a run directory, before they compute anything."""
    if Path(cfg.run_dir).exists() and not Path(cfg.run_dir).is_dir():
        raise ConfigError(f"run_dir={cfg.run_dir} is a file, not a directory; give another run_dir")


def validate_train(t: TrainConfig) -> None:
    for key in ("batch_size", "seq_len", "micro_batches", "steps"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key}={getattr(t, key)} must be >= 1")
    if t.batch_size % t.micro_batches:
        raise ConfigError(f"train.micro_batches={t.micro_batches} must divide train.batch_size={t.batch_size}")
    if t.schedule not in ("constant", "cosine"):
        raise ConfigError(f"train.schedule={t.schedule!r} must be 'constant' or 'cosine'")
    if t.checkpoint_every < 1 or t.keep_checkpoints < 1 or t.eval_every < 0:
        raise ConfigError("train.checkpoint_every and train.keep_checkpoints must be >= 1, train.eval_every >= 0")
    if t.learning_rate <= 0 or t.warmup_steps < 0 or t.grad_clip <= 0 or t.weight_decay < 0:
        raise ConfigError("train.learning_rate and train.grad_clip must be > 0; warmup_steps and weight_decay >= 0")


TASKS = ("addition", "zip_chain", "jsonl", "tfds")
FILE_FORMATS = ("plain", "gsm8k", "commonsenseqa")  # task.jsonl/tfds.format; starjax.tasks.formats implements them
FILE_FIELDS = ("question", "answer", "rationale", "difficulty", "choices")


def validate_star(cfg: Config) -> None:
    s, task = cfg.star, cfg.task
    if task.name not in TASKS:
        close = difflib.get_close_matches(task.name, TASKS, n=1)
        raise ConfigError(
            f"task.name={task.name!r} is unknown; choose one of {list(TASKS)}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
        )
    for key in ("iterations", "num_samples", "max_kept_per_question", "first_steps", "eval_samples"):
        if getattr(s, key) < 1:
            raise ConfigError(f"star.{key}={getattr(s, key)} must be >= 1")
    if s.temperature < 0 or s.eval_temperature < 0 or s.step_growth < 0 or s.test_limit < 0:
        raise ConfigError("star.temperature, star.eval_temperature, star.step_growth and star.test_limit must be >= 0")
    if s.rationalize_samples is not None and s.rationalize_samples < 1:
        raise ConfigError(f"star.rationalize_samples={s.rationalize_samples} must be >= 1 (or null: star.num_samples)")
    if s.train_prompt not in ("bare", "few_shot"):
        raise ConfigError(f"star.train_prompt={s.train_prompt!r}: use bare (the question alone) or few_shot")
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
    a = task.addition
    if not 1 <= a.min_digits <= a.max_digits or a.train_size < 1 or a.test_size < 1 or a.seed_max_digits < 1:
        raise ConfigError("task.addition needs 1 <= min_digits <= max_digits, seed_max_digits >= 1 and positive sizes")
    if not 0 < a.seed_long_decay <= 1:
        raise ConfigError(f"task.addition.seed_long_decay={a.seed_long_decay} must be in (0, 1] (1: longer sums uniform)")
    if a.seed_long_max_digits is not None and not a.seed_max_digits < a.seed_long_max_digits <= a.max_digits:
        raise ConfigError(
            f"task.addition.seed_long_max_digits={a.seed_long_max_digits} must be above seed_max_digits="
            f"{a.seed_max_digits} and at most max_digits={a.max_digits} (or null: max_digits)"
        )
    pool = sum((10 if n == 1 else 9 * 10 ** (n - 1)) ** 2 for n in range(a.min_digits, a.max_digits + 1))
    if a.train_size + a.test_size > pool:
        raise ConfigError(
            f"task.addition: {a.min_digits}-{a.max_digits} digits give only {pool} distinct problems, fewer than "
            f"train_size + test_size = {a.train_size + a.test_size}; raise max_digits or lower the sizes"
        )
    z = task.zip_chain
    if not 1 <= z.bits <= 8 or not z.seed_delta or any(not 0 <= d <= 1 for d in z.seed_delta):
        raise ConfigError("task.zip_chain needs 1 <= bits <= 8 and seed_delta values in [0, 1]")
    if len(z.seed_delta) not in (1, z.bits):
        raise ConfigError(f"task.zip_chain.seed_delta has {len(z.seed_delta)} values; give one, or one per step ({z.bits})")
    if not 0 <= z.test_fraction < 1 or z.seed_per_question < 1:
        raise ConfigError("task.zip_chain needs 0 <= test_fraction < 1 (0: test = train) and seed_per_question >= 1")
    for name in ("jsonl", "tfds"):
        f = getattr(task, name)
        if not 0 <= f.test_fraction < 1 or f.few_shot < 0:
            raise ConfigError(f"task.{name} needs 0 <= test_fraction < 1 and few_shot >= 0")
        unknown = sorted(set(f.fields) - set(FILE_FIELDS))
        if unknown:
            raise ConfigError(f"task.{name}.fields has unknown keys {unknown}; use {', '.join(FILE_FIELDS)}")
        if f.format not in FILE_FORMATS:
            raise ConfigError(f"task.{name}.format={f.format!r} is unknown; choose one of {list(FILE_FORMATS)}")
    if task.name in ("jsonl", "tfds"):
        f, what = getattr(task, task.name), "a JSONL file" if task.name == "jsonl" else "a TFDS dataset name"
        if f.train is None:
            raise ConfigError(f"task.name={task.name} needs task.{task.name}.train: {what}")
        held = f.test is None if task.name == "jsonl" else f.test_split is None
        if held and f.test_fraction == 0:
            raise ConfigError(
                f"task.{task.name}: no test data; set task.{task.name}.test{'' if task.name == 'jsonl' else '_split'} "
                f"or task.{task.name}.test_fraction > 0"
            )


def _load_yaml(path: str | Path, seen: tuple = ()) -> Any:
    """A YAML file's keys; `include: OTHER.yaml` (relative to this file) is loaded first and
    overridden by this file, so a recipe can be a few lines on top of another."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found")
    if p.resolve() in seen:
        raise ConfigError(f"{str(p)!r} includes itself")
    try:
        cfg = OmegaConf.load(p)
    except Exception as e:  # yaml.YAMLError and friends: report, never trace
        raise ConfigError(f"cannot parse {str(p)!r}: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, typing.Mapping) and not OmegaConf.is_dict(cfg):
        raise ConfigError(f"{str(p)!r} must hold a mapping of config keys")
    include = cfg.pop("include", None)
    if include is None:
        return cfg
    if not isinstance(include, str):
        raise ConfigError(f"include: in {str(p)!r} must name one YAML file")
    return OmegaConf.merge(_load_yaml(p.parent / include, (*seen, p.resolve())), cfg)


def _parse_overrides(overrides: Sequence[str]) -> Any:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} must look like key.sub=value (e.g. model.num_layers=2)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot parse overrides: {e.msg}") from None


def _all_keys(cls: type = Config, prefix: str = "") -> List[str]:
    """Every dotted key of the schema, sections included."""
    keys = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        ftype = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(ftype):
            keys.append(key)
            keys.extend(_all_keys(ftype, key + "."))
        else:
            keys.append(key)
    return keys


def _field_type(full_key: str) -> Any:
    cls: Any = Config
    for part in full_key.split("."):
        if typing.get_origin(cls) in (dict, Dict):
            cls = typing.get_args(cls)[1]
            continue
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return None
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return None
        cls = hints[part]
    return cls


def _unknown_key_message(full_key: str) -> str:
    close = difflib.get_close_matches(full_key, _all_keys(), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else "; run `starjax info` to list valid keys"
    return f"unknown config key {full_key!r}{hint}"


def _type_name(t: Any) -> str:
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if typing.get_origin(t) is typing.Union and len(args) == 1:
        return f"{_type_name(args[0])} or null"
    if typing.get_origin(t) in (list, List):
        return f"list of {_type_name(args[0])}"
    if typing.get_origin(t) in (dict, Dict):
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    return getattr(t, "__name__", str(t))


def _type_message(e: ValidationError) -> str:
    if not e.full_key:
        return f"invalid config: {(e.msg or str(e) or 'a section was given a plain value').splitlines()[0]}"
    key = e.full_key
    expected = _field_type(key)
    value = getattr(e, "value", None)
    if expected is None:
        return f"invalid value for {key}: {e.msg}"
    return f"{key}={value!r} has the wrong type: expected {_type_name(expected)}"
