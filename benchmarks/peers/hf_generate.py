"""Peer benchmark: Hugging Face transformers `generate` on a random Llama (CPU).

Run with the transformers venv's python (see benchmarks/peer_envs.py):
  benchmarks/.envs/transformers/bin/python benchmarks/peers/hf_generate.py \
      --preset tiny --batch 8
The last stdout line is a JSON result (see common.report).
"""

from __future__ import annotations

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no advisory chatter
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded, ever

import common


def build_model(cfg: dict, max_positions: int | None = None, use_cache: bool = True):
    """Random-init (seed 0) float32 Llama of the preset's shape, tied, sdpa.

    Shared with hf_train.py, which needs longer sequences and no KV cache.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=cfg["vocab"],
        hidden_size=cfg["d_model"],
        intermediate_size=cfg["mlp"],
        num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"],
        num_key_value_heads=cfg["kv_heads"],
        head_dim=cfg["head_dim"],
        hidden_act="silu",  # SwiGLU MLP
        rms_norm_eps=cfg["norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": cfg["rope_theta"]},
        max_position_embeddings=max_positions or cfg["prompt_len"] + cfg["new_tokens"],
        tie_word_embeddings=True,
        # No special ids: the generation config would otherwise inherit
        # eos=2 and stop rows early.
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        use_cache=use_cache,
        attn_implementation="sdpa",  # explicit: also transformers' CPU default
    )
    torch.manual_seed(common.PARAM_SEED)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise RuntimeError("embeddings are not tied")
    return model


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    cfg = common.PRESETS[args.preset]

    import torch
    from transformers import GenerationConfig

    torch.set_num_threads(2)  # the benchmark machine has 2 cores
    model = build_model(cfg)
    input_ids = torch.from_numpy(common.make_prompts(cfg, args.batch))
    # No padding, so the mask is all ones; passing it avoids HF guessing.
    attention_mask = torch.ones_like(input_ids)
    new = cfg["new_tokens"]

    def config(n: int):
        return GenerationConfig(
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=n,
            min_new_tokens=n,
            eos_token_id=None,
            pad_token_id=0,  # pad id is never used (no eos)
            use_cache=True,
        )

    gen_cfgs = {new: config(new), 1: config(1)}

    def generate(seed: int, n: int) -> None:
        torch.manual_seed(seed)  # HF sampling draws from torch's global RNG
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=gen_cfgs[n])
        if tuple(out.shape) != (args.batch, cfg["prompt_len"] + n):
            raise RuntimeError(f"unexpected output shape {tuple(out.shape)}")

    timing = common.time_generate(generate, new, args.repeats)
    common.report(
        "transformers",
        args,
        cfg,
        timing,
        common.versions("transformers", "torch"),
        f"LlamaForCausalLM eager PyTorch, attn={model.config._attn_implementation},"
        f" DynamicCache, tied embeddings, torch threads {torch.get_num_threads()};"
        " compile_s is a plain warm-up (no torch.compile)",
    )


if __name__ == "__main__":
    common.run_main(main)
