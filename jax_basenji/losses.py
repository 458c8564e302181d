"""Training losses (docs/seed_reference.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def poisson_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """The seed's Poisson loss: mean(pred - target * log(max(pred, 1e-20))).

    `pred`, `target`: `[batch, bins, tracks]`; computed in at least float32.
    """
    dtype = jnp.promote_types(pred.dtype, jnp.float32)
    pred, target = pred.astype(dtype), target.astype(dtype)
    return jnp.mean(pred - target * jnp.log(jnp.maximum(pred, 1e-20)))
