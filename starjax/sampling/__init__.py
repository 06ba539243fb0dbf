"""Generation: strategies.py (token choice), loop.py (compiled prefill + decode), engine.py (host API)."""
