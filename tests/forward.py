"""A model's output from one jitted program, for tests that compare other paths against it.

An NNX model called outside jit runs op by op, and XLA compiles every primitive of every layer
again for each new input shape: hundreds of small programs per call (tests/test_predict.py compiled
~700, most of its 90 s on 2 cores). In train mode the BatchNorm statistics update as in an eager call.
"""

from functools import partial

import jax
from flax import nnx


@partial(nnx.jit, static_argnames="head")
def forward(model: nnx.Module, sequence: jax.Array, head: str = "human",
            rngs: nnx.Rngs | None = None) -> jax.Array:
    """`model(sequence, head, rngs=rngs)`: `[batch, length, 4]` -> `[batch, bins, tracks]`."""
    return model(sequence, head, rngs=rngs)
