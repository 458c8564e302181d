"""jax_basenji: Basenji2 in JAX/Flax NNX, with torch checkpoint conversion.

Kept import-light: `from jax_basenji.config import ModelConfig` must not
import JAX (torch_ref uses it).
"""

from jax_basenji.config import ModelConfig

__all__ = ["ModelConfig"]
