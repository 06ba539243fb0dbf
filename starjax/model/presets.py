"""Named model sizes. `model.preset=NAME` applies one; explicit model.* keys still win."""

PRESETS: dict[str, dict] = {
    # ~3M params (+ embeddings): the CPU demo and tests.
    "tiny": dict(num_layers=4, d_model=256, num_heads=4, num_kv_heads=2, mlp_dim=1024),
    # ~85M params (+ embeddings): GPT-2-small sized, with grouped-query attention.
    "small": dict(num_layers=12, d_model=768, num_heads=12, num_kv_heads=4, mlp_dim=3072),
}
