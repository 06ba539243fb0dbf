"""Named model sizes. `model.preset=NAME` applies one; explicit model.* keys still win."""

PRESETS: dict[str, dict] = {
    # ~3M params (+ embeddings): the CPU demo and tests.
    "tiny": dict(num_layers=4, d_model=256, num_heads=4, num_kv_heads=2, mlp_dim=1024),
    # ~85M params (+ embeddings): GPT-2-small sized, with grouped-query attention.
    "small": dict(num_layers=12, d_model=768, num_heads=12, num_kv_heads=4, mlp_dim=3072),
    # The architectures of the recipes' checkpoints (their config.json), to size a run with
    # `starjax info CONFIG --memory model.from_hf=null model.preset=NAME` before downloading one.
    "qwen2.5-1.5b": dict(
        vocab_size=151936,
        num_layers=28,
        d_model=1536,
        num_heads=12,
        num_kv_heads=2,
        head_dim=128,
        mlp_dim=8960,
        rope_theta=1000000.0,
        qkv_bias=True,
        tie_embeddings=True,
    ),
    "gemma-2b": dict(
        vocab_size=256000,
        num_layers=18,
        d_model=2048,
        num_heads=8,
        num_kv_heads=1,
        head_dim=256,
        mlp_dim=16384,
        activation="gelu_tanh",
        scale_embeddings=True,
        norm_offset=1.0,
        tie_embeddings=True,
    ),
}
