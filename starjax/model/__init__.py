"""Llama-family decoder-only transformer (Flax NNX): transformer.py, layers.py, kv_cache.py, presets.py."""
