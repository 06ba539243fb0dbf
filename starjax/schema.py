"""The run configuration's schema: frozen dataclasses, the one source of defaults.

`starjax/config.py` loads and checks a config against it; each task, scorer and selector
registers the dataclass of its own settings beside its code (starjax/registry.py), and the loader
adds them as sections (`task.addition`, `selection.cap`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

MESH_AXES = ("data", "fsdp", "tensor")
DTYPES = ("float32", "bfloat16")
MAX_STOP_IDS = 8  # sampler stop ids travel as a fixed-size traced array, eos included

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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class RuntimeConfig:
    # >0: number of fake CPU devices to create (local runs and tests); must be set before JAX starts.
    num_cpu_devices: int = 0
    # Force a JAX platform ("cpu", "gpu", "tpu"); null keeps JAX's own choice.
    platform: Optional[str] = None
    # glibc malloc for XLA:CPU's scratch memory (starjax/host_memory.py, docs/training.md): "reuse"
    # keeps a freed buffer for the next execution, "system" keeps glibc's defaults, "auto" reuses on CPU
    host_malloc: str = "auto"
    # One process per host (or per GPU) on one global mesh: JAX's multi-controller runtime (docs/multihost.md).
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


@dataclass(frozen=True)
class MeshConfig:
    # Devices along each mesh axis; one axis may be -1 = all remaining devices.
    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    rules: Dict[str, List[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_RULES.items()})


@dataclass(frozen=True)
class RopeScalingConfig:
    # "llama3" (Llama 3.1+) or "linear"; other Hugging Face rope types are refused at import.
    rope_type: str = "llama3"
    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


ACTIVATIONS = ("silu", "gelu_tanh")


@dataclass(frozen=True)
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
    # einsum: attention as two einsums with float32 logits (every backend; the shared-prefix
    # decode path always uses it). dot_product: jax.nn.dot_product_attention, which on GPU runs
    # cuDNN's fused (flash) kernel without a KV cache where it takes the sizes (16-bit compute,
    # head dims of 8s up to 256) and XLA's otherwise; on a TPU,
    # attention without a KV cache runs Pallas' splash kernel (lengths and head dims of 128s).
    attention: str = "einsum"
    # Store the layers stacked (one array per weight with a leading "layers" axis, never sharded)
    # and run them as one lax.scan: the train step compiles one layer, not every layer, so compile
    # time stays flat as models deepen. Decoding slices the layers out. Checkpoints and Hugging
    # Face exports keep the per-layer layout either way, so a run may switch.
    scan_layers: bool = False
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


@dataclass(frozen=True)
class TokenizerConfig:
    # A SentencePiece .model file; tasks that train their own tokenizer leave it null.
    path: Optional[str] = None


@dataclass(frozen=True)
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
    # continuous: each of batch_size slots takes the next queued prompt as soon as its row ends,
    # and a prefix all prompts share is prefilled once (docs/sampling.md). fixed: batches of
    # batch_size rows that run until their longest row ends.
    engine: str = "continuous"
    # continuous: prompts are prefilled into free slots this many rows (prompts x num_samples) at
    # a time; 0 = batch_size // 4.
    refill_rows: int = 0
    # A mesh of generation's own (e.g. data: -1, every device), over the first devices it needs;
    # the trainer's `mesh` may then use fewer. null: the trainer's mesh. Rows split over more
    # devices can round differently in the last bits (docs/sampling.md); replicas do not.
    mesh: Optional[MeshConfig] = None
    # Copies of the model that generate whole batches at once, each on its own devices (replica r
    # takes the r-th group of sampler.mesh's size, else of the trainer's mesh's): each runs the
    # programs one copy would, so the samples are the same bit for bit. Fixed engine only.
    replicas: int = 1
    # Fixed engine only (the continuous engine's rows each write at a slot of their own). 0: every
    # decode step attends to the whole cache (prompt bucket + max_new_tokens slots). N: decoding
    # starts in a cache of the smallest multiple of N slots past the prompt and moves to the next
    # multiple when it fills, so early steps skip slots no token has reached yet. The products
    # then run over fewer keys, which on some CPUs rounds differently in the last bits
    # (docs/sampling.md#a-growing-cache).
    cache_growth: int = 0


@dataclass(frozen=True)
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
    # AdamW's moments: float32, or bfloat16 (half their memory; updated in float32, stored
    # rounded). The parameters, the master copy updates apply to, keep model.param_dtype.
    moment_dtype: str = "float32"
    # What the backward pass recomputes instead of storing, per layer: none; full (all but each
    # layer's input: least memory, about a third more compute); dots_saveable (keeps the matmul
    # outputs, recomputes the cheap elementwise work).
    remat: str = "none"
    # LoRA: 0 = full fine-tune; r > 0 trains rank-r adapters of the lora_targets weights of
    # every block (q, k, v, o, gate, up, down), scaled by lora_alpha / r, and merges them into
    # the weights when training ends (starjax/training/lora.py).
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: List[str] = field(default_factory=lambda: ["q", "k", "v", "o"])
    # Parameters to start from (a directory written by save_params); null = random init.
    init_from: Optional[str] = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    # Held-out loss every this many steps (0 = only at the end).
    eval_every: int = 0


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class TaskConfig:
    # A registered task (starjax.tasks, or a module in `plugins`); its settings are task.<name>.
    name: str = "addition"
    # Where built-in synthetic datasets are prepared (TFDS, array_record) and cached.
    data_dir: str = "~/.cache/starjax/tfds"
    # Wrap every prompt in the tokenizer's chat template as the user's turn (instruct checkpoints:
    # tokenizer_config.json's chat_template; starjax/hf/chat.py).
    chat_template: bool = False
    # (the loader adds one section per registered task: task.addition, task.zip_chain, ...)


@dataclass(frozen=True)
class ScoringConfig:
    """Settings of the scorers that have any: scoring.<name> (the loader adds the sections)."""


@dataclass(frozen=True)
class SelectionConfig:
    """Settings of the selectors that have any: selection.<name> (the loader adds the sections)."""


@dataclass(frozen=True)
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
    # Stop pre-training early, at the first multiple of stop_every steps where greedy accuracy on
    # the first stop_questions training questions of difficulty stop_difficulty reaches
    # stop_accuracy (null: all `steps`, which set the cosine schedule's length either way). A
    # small model learns each difficulty abruptly at a seed-dependent step, so a skill, not a
    # step count, gives every seed the same kind of base (docs/star.md).
    stop_difficulty: Optional[str] = None
    stop_accuracy: float = 0.5
    stop_every: int = 100
    stop_questions: int = 100
    # true: the base is the last check's weights below the bar, not the first that reaches it:
    # a base that cannot yet do stop_difficulty, the situation STaR starts from (docs/star.md).
    stop_before: bool = False


@dataclass(frozen=True)
class WandbConfig:
    # A Weights & Biases project to log to (null: no W&B). Needs `pip install 'starjax[wandb]'`.
    project: Optional[str] = None
    entity: Optional[str] = None
    # null: the run directory's name.
    name: Optional[str] = None
    # online, or offline (written under the run directory, `wandb sync` uploads it later).
    mode: str = "online"


@dataclass(frozen=True)
class LoggingConfig:
    # Metrics always go to metrics.jsonl and TensorBoard (tb/); W&B besides them when configured.
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass(frozen=True)
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
    # Samples per question the last fine-tune already had a kept record of (null: num_samples):
    # with num_samples raised, the sampling moves to the questions still unsolved (as in
    # DART-Math's difficulty-aware rejection sampling, Tong et al. 2024).
    solved_samples: Optional[int] = None
    # The prompt of a kept training record: the bare question (bare, as STaR's code stores them)
    # or the question after the few-shot exemplars the samples were drawn with (few_shot).
    train_prompt: str = "bare"
    # How completions are produced (star/plugins/rollouts.py): continuation (one per sample) or
    # markov_chain (one step at a time, each from a prompt holding only the current state).
    rollout: str = "continuation"
    # Scorers, each a name (answer, steps, reward_model, ... see docs/extending.md) or a
    # package.module:function(prompts, completions, problems) -> scores; the first one's verdict
    # decides whether a sample is correct, every score is recorded with the sample.
    scorers: List[str] = field(default_factory=lambda: ["answer"])
    # Selectors applied in order to each question's samples (star/plugins/selectors.py); a
    # question is solved when something survives them, and what survives is kept. STaR: correct,
    # dedupe, cap (selection.cap.per_question = 1). Their settings are selection.<name>.
    selectors: List[str] = field(default_factory=lambda: ["correct", "dedupe", "cap"])
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
    # Which params/iter_N to keep once iteration N is evaluated: all; last (the newest two: a
    # resume continues from the newest); best (the newest two and the best by test accuracy).
    keep_policies: str = "best"
    # Iteration-0 base evaluation and per-iteration test evaluation on at most this many test problems (0 = all).
    test_limit: int = 0


@dataclass(frozen=True)
class Config:
    seed: int = 0
    run_dir: str = "runs/default"
    # Modules to import before the config is built: they register tasks, rollouts, scorers and
    # selectors (and their config sections) by name (docs/extending.md).
    plugins: List[str] = field(default_factory=list)
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
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
