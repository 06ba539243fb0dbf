"""The built-in rollouts, scorers and selectors, registered by name (starjax/registry.py)."""
