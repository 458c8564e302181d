"""Train-mode BatchNorm -> GELU -> MaxPool(2) with a hand-written backward pass.

The stem and the tower spend most of their non-convolution time here, on
tensors of up to 131,072 x 288 values. Autodiff of the three ops saves several
full-size intermediates and walks them in many passes; this backward keeps
only the BatchNorm input and recomputes the rest in two fused passes (one
reduction for d scale / d bias, one elementwise pass for d input). On a
2-core CPU at 65,536 x 339 this halves the block's non-convolution time
(268 -> 144 ms; docs/benchmarks.md).

Max-pool ties send the gradient to the first element of the pair, as torch's
MaxPool1d does (JAX's max would split it).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jax_basenji.ops import at_least_f32, batch_moments, gelu_erf, max_pool2

_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


def _forward(y, scale, bias, eps):
    mean, var = batch_moments(y)
    u = (at_least_f32(y) - mean) * jax.lax.rsqrt(var + eps) * scale + bias
    return max_pool2(gelu_erf(u)).astype(y.dtype), mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def bn_gelu_pool(y: jax.Array, scale: jax.Array, bias: jax.Array, eps: float):
    """`y` `[batch, length, C]` -> (`[batch, length // 2, C]`, batch mean `[C]`, biased var `[C]`).

    Statistics are at least float32. The mean and variance outputs feed the
    running statistics only, under stop_gradient: their cotangents are ignored.
    """
    return _forward(y, scale, bias, eps)


def _fwd(y, scale, bias, eps):
    out = _forward(y, scale, bias, eps)
    return out, (y, out[1], out[2], scale, bias)


def _bwd(eps, residuals, cotangents):
    y, mean, var, scale, bias = residuals
    dz = cotangents[0].astype(mean.dtype)
    b, n, c = y.shape
    half = n // 2
    rstd = jax.lax.rsqrt(var + eps)
    xhat = (y.astype(mean.dtype) - mean) * rstd
    u = (xhat[:, : 2 * half] * scale + bias).reshape(b, half, 2, c)
    first = gelu_erf(u[:, :, 0]) >= gelu_erf(u[:, :, 1])
    da = jnp.stack([jnp.where(first, dz, 0), jnp.where(first, 0, dz)], axis=2)
    gelu_grad = 0.5 * (1.0 + jax.lax.erf(u * _SQRT_HALF)) + u * _INV_SQRT_2PI * jnp.exp(-0.5 * u * u)
    du = (da * gelu_grad).reshape(b, 2 * half, c)
    if n % 2:  # the odd last position is dropped by the pool: no gradient through it
        du = jnp.pad(du, ((0, 0), (0, 1), (0, 0)))
    count = b * n
    d_bias = du.sum(axis=(0, 1))
    d_scale = (du * xhat).sum(axis=(0, 1))
    dy = (rstd * scale) * (du - d_bias / count - xhat * (d_scale / count))
    return dy.astype(y.dtype), d_scale, d_bias


bn_gelu_pool.defvjp(_fwd, _bwd)
