"""starjax: the Self-Taught Reasoner (STaR) loop and RL-STaR theory in JAX/Flax NNX.

Importing it changes nothing in the process: process settings (devices, platform, the host
allocator) are applied by `starjax.runtime.setup_runtime`, which every command runs first.
"""

__version__ = "0.1.0"
