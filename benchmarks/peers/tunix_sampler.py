"""Peer benchmark: google-tunix `Sampler` on a random-init tunix Llama3 model.

Run with the tunix venv's python (see benchmarks/peer_envs.py):
  benchmarks/.envs/tunix/bin/python benchmarks/peers/tunix_sampler.py \
      --preset tiny --batch 8
The last stdout line is a JSON result (see common.report).
"""

from __future__ import annotations

import functools
import os
import warnings

# CPU only: keep JAX from probing for accelerators (and logging about them).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common


class IdTokenizer:
    """Tunix's Sampler only takes strings, so prompts travel as "id id id".

    bos is None (nothing is prepended); pad and eos are ids >= vocab, which the
    model can never sample: eos never fires, so every row decodes exactly
    `new_tokens`, and no sampled token is mistaken for padding (tunix masks
    any buffer slot equal to pad_id out of attention).
    """

    def __init__(self, vocab: int):
        self._pad, self._eos = vocab, vocab + 1

    def encode(self, text: str, **_):
        return [int(t) for t in text.split()]

    def decode(self, ids, **_):
        return " ".join(str(int(i)) for i in ids)

    def bos_id(self):
        return None

    def eos_id(self):
        return self._eos

    def pad_id(self):
        return self._pad


def build_model(cfg: dict):
    import jax
    from flax import nnx
    from tunix.models.llama3 import model as llama

    # tunix 0.1.7 quirk: Attention calls apply_rope() without rope_theta, so
    # ModelConfig.rope_theta is ignored and the default (1e6) is used. Rebind
    # the module-level name so the preset's theta is really applied.
    llama.apply_rope = functools.partial(llama.apply_rope, rope_theta=cfg["rope_theta"])
    mcfg = llama.ModelConfig(
        num_layers=cfg["layers"],
        vocab_size=cfg["vocab"],
        embed_dim=cfg["d_model"],
        hidden_dim=cfg["mlp"],
        num_heads=cfg["heads"],
        head_dim=cfg["head_dim"],
        num_kv_heads=cfg["kv_heads"],
        rope_theta=cfg["rope_theta"],
        norm_eps=cfg["norm_eps"],
        weight_tying=True,
    )
    model = llama.Llama3(mcfg, rngs=nnx.Rngs(common.PARAM_SEED))
    # tunix initialises the SwiGLU kernels to zeros; give them random values
    # too so the model is a genuinely random one (same cost either way).
    init = nnx.initializers.normal()
    key = jax.random.key(common.PARAM_SEED + 1)
    for layer in model.layers:
        for lin in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
            key, sub = jax.random.split(key)
            lin.kernel.value = init(sub, lin.kernel.value.shape)
    dtypes = {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))}
    if dtypes != {jax.numpy.dtype("float32")}:
        raise RuntimeError(f"expected float32 params, got {dtypes}")
    return model, mcfg


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    cfg = common.PRESETS[args.preset]
    warnings.filterwarnings("ignore")  # deprecated _init_cache, donation on CPU

    import jax
    from tunix.generate import sampler as sampler_lib

    model, mcfg = build_model(cfg)
    # The cache must hold prompt + new tokens; tunix needs no rounding here.
    cache_size = cfg["prompt_len"] + cfg["new_tokens"]
    sampler = sampler_lib.Sampler(
        model,
        IdTokenizer(cfg["vocab"]),
        sampler_lib.CacheConfig(
            cache_size=cache_size, num_layers=mcfg.num_layers, num_kv_heads=mcfg.num_kv_heads, head_dim=mcfg.head_dim
        ),
    )
    prompts = [" ".join(map(str, row)) for row in common.make_prompts(cfg, args.batch)]

    def generate(seed: int, n: int) -> None:
        # temperature / top_p / top_k are static (baked into the jitted
        # functions), only the seed is traced: new seeds do not recompile.
        # The cache keeps its full size for n = 1, so prefill work is the same.
        out = sampler(
            prompts,
            max_generation_steps=n,
            max_prompt_length=cfg["prompt_len"],
            echo=False,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            seed=seed,
        )
        jax.block_until_ready(out.tokens)  # already host numpy; kept explicit
        lengths = {len(t) for t in out.tokens}
        if len(out.tokens) != args.batch or lengths != {n}:
            raise RuntimeError(f"unexpected output lengths {sorted(lengths)}")

    timing = common.time_generate(generate, cfg["new_tokens"], args.repeats)
    common.report(
        "tunix",
        args,
        cfg,
        timing,
        common.versions("google-tunix", "jax", "jaxlib", "flax"),
        "tunix.models.llama3 (tied embeddings); Sampler prefill jit + decode "
        "jit(lax.while_loop); static temperature; rope_theta patched in "
        f"(tunix ignores it); jax devices: {jax.device_count()} cpu",
    )


if __name__ == "__main__":
    common.run_main(main)
