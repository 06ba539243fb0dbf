"""starjax: the Self-Taught Reasoner (STaR) loop and RL-STaR theory in JAX/Flax NNX."""

__version__ = "0.1.0"
