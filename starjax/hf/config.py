"""Hugging Face `config.json` <-> starjax `ModelConfig`, for the families starjax can run exactly.

Supported: Llama (Llama 2 and 3, with Llama 3.1+ rotary scaling), Mistral, Qwen2/Qwen2.5 (q/k/v
bias) and Gemma (GeGLU, embeddings scaled by sqrt(d_model), RMSNorm as x * (1 + w)). Anything a
family can switch on that starjax does not compute (o_proj or MLP biases, sliding windows that
bind, partial rotary, other rope types) is refused by name rather than imported wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starjax import storage
from starjax.errors import ConfigError
from starjax.schema import ModelConfig, RopeScalingConfig

# model_type -> architecture class name written on export.
FAMILIES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "gemma": "GemmaForCausalLM",
}
# Keys of ModelConfig that a checkpoint decides; everything else (dtypes, init) stays the user's.
ARCH_KEYS = (
    "vocab_size",
    "num_layers",
    "d_model",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "mlp_dim",
    "rope_theta",
    "norm_eps",
    "tie_embeddings",
    "qkv_bias",
    "activation",
    "scale_embeddings",
    "norm_offset",
    "rope_scaling",
)
_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """The parsed config.json of a Hugging Face checkpoint directory (of a remote one, only its
    config.json is fetched)."""
    d = storage.local(f"{str(path).rstrip('/')}/config.json").parent if storage.is_remote(path) else Path(path).expanduser()
    if not d.is_dir():
        raise ConfigError(f"Hugging Face checkpoint directory {str(d)!r} not found")
    f = d / "config.json"
    if not f.is_file():
        raise ConfigError(f"{str(d)!r} has no config.json; give a Hugging Face checkpoint directory")
    try:
        hf = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot parse {str(f)!r}: {e}") from None
    if not isinstance(hf, dict):
        raise ConfigError(f"{str(f)!r} must hold a JSON object")
    return hf


def hf_family(hf: dict[str, Any]) -> str:
    family = hf.get("model_type")
    if family not in FAMILIES:
        arch = ", ".join(hf.get("architectures") or []) or "no architectures field"
        raise ConfigError(
            f"unsupported architecture: model_type={family!r} ({arch}); starjax imports {', '.join(FAMILIES.values())}"
        )
    return family


def model_keys_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """The ModelConfig values (ARCH_KEYS) a Hugging Face config describes."""
    family = hf_family(hf)
    need = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"]
    missing = [k for k in need if not isinstance(hf.get(k), int)]
    if missing:
        raise ConfigError(f"config.json lacks integer {', '.join(missing)}")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise ConfigError(f"unsupported: {family} with {flag}=true (starjax has no o_proj/MLP biases)")
    if family == "qwen2" and hf.get("use_sliding_window"):
        raise ConfigError("unsupported: qwen2 with use_sliding_window=true (starjax attends to the full context)")
    act = hf.get("hidden_activation") or hf.get("hidden_act", "silu")
    if family == "gemma" and act == "gelu":  # Gemma's legacy value means the tanh approximation (as transformers reads it)
        act = "gelu_pytorch_tanh"
    if act not in _ACTIVATIONS:
        raise ConfigError(f"unsupported activation hidden_act={act!r}; starjax computes {sorted(_ACTIVATIONS)}")
    heads = hf["num_attention_heads"]
    theta, scaling = _rope(hf)
    return {
        "vocab_size": hf["vocab_size"],
        "num_layers": hf["num_hidden_layers"],
        "d_model": hf["hidden_size"],
        "num_heads": heads,
        "num_kv_heads": hf.get("num_key_value_heads") or heads,
        "head_dim": hf.get("head_dim") or hf["hidden_size"] // heads,
        "mlp_dim": hf["intermediate_size"],
        "rope_theta": theta,
        "norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", family == "gemma")),
        "qkv_bias": family == "qwen2",
        "activation": _ACTIVATIONS[act],
        "scale_embeddings": family == "gemma",
        "norm_offset": 1.0 if family == "gemma" else 0.0,
        "rope_scaling": scaling,
    }


def _rope(hf: dict[str, Any]) -> tuple[float, RopeScalingConfig | None]:
    """(theta, scaling) from either layout: transformers 5's `rope_parameters`, or the older
    top-level `rope_theta` + `rope_scaling` that most published checkpoints carry."""
    params = dict(hf.get("rope_scaling") or {})
    params.update(hf.get("rope_parameters") or {})
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    if params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ConfigError("unsupported: partial_rotary_factor != 1 (starjax rotates the whole head)")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind == "linear":
        return theta, RopeScalingConfig(rope_type="linear", factor=float(params["factor"]))
    if kind == "llama3":
        return theta, RopeScalingConfig(
            rope_type="llama3",
            factor=float(params["factor"]),
            low_freq_factor=float(params["low_freq_factor"]),
            high_freq_factor=float(params["high_freq_factor"]),
            original_max_position_embeddings=int(params["original_max_position_embeddings"]),
        )
    raise ConfigError(f"unsupported rope_type={kind!r}; starjax computes default, linear and llama3 rotary embeddings")


def hf_architecture_layer(from_hf: str) -> dict[str, Any]:
    """The `model` keys the config.json of `from_hf` decides: a config layer over every other
    (the checkpoint, not a preset or an override, decides the shape)."""
    return {**model_keys_from_hf(read_hf_config(from_hf)), "preset": None}


def family_of(m: ModelConfig, source: dict[str, Any] | None = None) -> str:
    """The Hugging Face family to export `m` as: the source checkpoint's, else the one whose
    computation `m` matches."""
    if source is not None:
        return hf_family(source)
    gemma = (m.activation, m.scale_embeddings, m.norm_offset) == ("gelu_tanh", True, 1.0)
    if gemma and not m.qkv_bias:
        return "gemma"
    if (m.activation, m.scale_embeddings, m.norm_offset) != ("silu", False, 0.0):
        raise ConfigError(
            "no Hugging Face family computes this model (activation, scale_embeddings and norm_offset "
            "must be all Gemma's or all Llama's)"
        )
    return "qwen2" if m.qkv_bias else "llama"


def hf_config_from_model(
    m: ModelConfig, dtype: str, token_ids: dict[str, int | None], source: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A config.json for `m`: the source checkpoint's (its other fields kept) with the shape and
    rope fields rewritten, in the top-level `rope_theta`/`rope_scaling` layout every transformers
    version reads."""
    family = family_of(m, source)
    hf = {k: v for k, v in (source or {}).items() if k not in ("rope_parameters", "rope_scaling", "rope_theta")}
    hf.update(
        {
            "architectures": [FAMILIES[family]],
            "model_type": family,
            "vocab_size": m.vocab_size,
            "hidden_size": m.d_model,
            "intermediate_size": m.mlp_dim,
            "num_hidden_layers": m.num_layers,
            "num_attention_heads": m.num_heads,
            "num_key_value_heads": m.num_kv_heads,
            "head_dim": m.head_dim or m.d_model // m.num_heads,
            "rms_norm_eps": m.norm_eps,
            "tie_word_embeddings": m.tie_embeddings,
            "rope_theta": m.rope_theta,
            "torch_dtype": dtype,
        }
    )
    hf.setdefault("hidden_act", "gelu_pytorch_tanh" if family == "gemma" else "silu")
    if m.rope_scaling is not None:
        r = m.rope_scaling
        hf["rope_scaling"] = (
            {"rope_type": "linear", "factor": r.factor}
            if r.rope_type == "linear"
            else {
                "rope_type": "llama3",
                "factor": r.factor,
                "low_freq_factor": r.low_freq_factor,
                "high_freq_factor": r.high_freq_factor,
                "original_max_position_embeddings": r.original_max_position_embeddings,
            }
        )
    for key, value in token_ids.items():
        if source is None or key not in hf:
            hf[key] = value
    return hf
