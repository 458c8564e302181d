"""jax_basenji: Basenji2 in JAX/Flax NNX, with torch checkpoint conversion.

Kept import-light: `from jax_basenji.config import ModelConfig` must not
import JAX (torch_ref uses it).
"""

import os

from jax_basenji.config import ModelConfig

# XLA's CPU backend hands some multiply-reduce fusions to YNNPACK, which runs
# the reductions of BatchNorm's backward pass ~100x slower than XLA's own
# emitter (a Basenji2 training step at 131 kb on 2 cores: 10.5 s -> 3.7 s
# without them; docs/benchmarks.md). Flags are read when JAX first creates a
# backend, so this applies unless JAX ran before jax_basenji was imported,
# and never overrides a choice in the user's XLA_FLAGS. GPU is unaffected.
_YNN = "--xla_cpu_experimental_ynn_fusion_type"
if _YNN not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_YNN}=".strip()

# The Python API (jax_basenji/api.py); it imports JAX only when called. `fine_tune`, not `finetune`:
# that name is the jax_basenji.finetune module's once it is imported.
from jax_basenji.api import Basenji, fine_tune, load, plot_logo, plot_tracks  # noqa: E402

__all__ = ["Basenji", "ModelConfig", "fine_tune", "load", "plot_logo", "plot_tracks"]
