"""starjax: the Self-Taught Reasoner (STaR) loop and RL-STaR theory in JAX/Flax NNX."""

from starjax.host_memory import keep_freed_host_memory

__version__ = "0.1.0"

# first, before JAX starts its threads: see starjax/host_memory.py
HOST_MALLOC_TUNED = keep_freed_host_memory()
