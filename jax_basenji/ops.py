"""Elementwise and pooling ops shared by the model and its fused training op.

GELU in the three forms Basenji2 ports use, torch's Softplus, floor max-pool of 2,
and BatchNorm's batch statistics; all on `[batch, length, channels]` where it matters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gelu_erf(x: jax.Array) -> jax.Array:
    # torch.nn.GELU() default is the exact erf form; flax/jax default to tanh.
    return jax.nn.gelu(x, approximate=False)


def gelu_tanh(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


def gelu_sigmoid(x: jax.Array) -> jax.Array:
    # basenji's layers.GELU when the published weights were trained (before 2022).
    return jax.nn.sigmoid(1.702 * x) * x


GELUS = {"erf": gelu_erf, "tanh": gelu_tanh, "sigmoid": gelu_sigmoid}


def softplus(x: jax.Array) -> jax.Array:
    # torch.nn.Softplus(beta=1, threshold=20) returns x itself above 20.
    return jnp.where(x > 20.0, x, jax.nn.softplus(x))


def at_least_f32(x: jax.Array) -> jax.Array:
    """bfloat16 -> float32; float32/float64 unchanged (statistics and outputs)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def max_pool2(x: jax.Array) -> jax.Array:
    """`[batch, length, channels]` -> `[batch, length // 2, channels]` (floor, like torch)."""
    b, n, c = x.shape
    n2 = n // 2
    return x[:, : 2 * n2].reshape(b, n2, 2, c).max(axis=2)


def batch_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and *biased* variance of `[batch, length, C]` over batch and length, >= float32."""
    xf = at_least_f32(x)
    mean = xf.mean(axis=(0, 1))
    return mean, jnp.square(xf - mean).mean(axis=(0, 1))


def fill_n(one_hot: jax.Array, value: float) -> jax.Array:
    """`[..., L, 4]` one-hot with its all-zero (N) rows set to `value` in every channel (kipoiseq's
    0.25); the input's dtype is kept unless it cannot hold `value` (then float32)."""
    if not value:
        return one_hot
    x = one_hot if jnp.issubdtype(one_hot.dtype, jnp.floating) else one_hot.astype(jnp.float32)
    return jnp.where((x == 0).all(axis=-1, keepdims=True), jnp.asarray(value, x.dtype), x)
