"""Train-mode BatchNorm -> GELU -> MaxPool(2), and train-mode BatchNorm alone, with hand-written backward passes.

The stem and the tower spend most of their non-convolution time in `bn_gelu_pool`, on
tensors of up to 131,072 x 288 values. Autodiff of the three ops saves several
full-size intermediates and walks them in many passes; its backward keeps
only the BatchNorm input and (for a GPU) the pool's choice, 1 byte per pair, and
recomputes the rest: on a CPU in two fused passes (one reduction for d scale /
d bias, one elementwise pass for d input), on a GPU in three that never store
the f32 d(BatchNorm output) (see `_bwd`). On a 2-core CPU at 65,536 x 339 the
first version halved the block's non-convolution time (268 -> 144 ms;
docs/benchmarks.md). `batch_norm` (the dilated and final blocks, the published
tower) keeps only its input likewise.

Max-pool ties send the gradient to the first element of the pair, as torch's
MaxPool1d does (JAX's max would split it).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jax_basenji import ops
from jax_basenji.ops import at_least_f32, batch_moments, channel_sums, gelu_erf, normalize

_SQRT_HALF = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


def _xhat(x, mean, rstd):
    """`[batch, length, C]` standardised by the `[C]` batch statistics, f32: what both backwards recompute."""
    return (at_least_f32(x) - mean) * rstd


def _normalized(y, mean, rstd, scale, bias):
    """(xhat `[batch, length, C]`, u = BatchNorm output `[batch, length // 2, 2, C]`), f32."""
    b, n, c = y.shape
    xhat = _xhat(y, mean, rstd)
    return xhat, (xhat[:, : 2 * (n // 2)] * scale + bias).reshape(b, n // 2, 2, c)


def _takes_first(g):
    """`[batch, length // 2, 2, C]` GELU outputs -> `[batch, length // 2, C]`: the pool takes the pair's first
    (ties included, as torch's MaxPool1d)."""
    return g[:, :, 0] >= g[:, :, 1]


def _forward(y, scale, bias, eps):
    """(pooled `[batch, length // 2, C]` in y's dtype, mean, var, first: the pool took the pair's first)."""
    mean, var = batch_moments(y)
    g = gelu_erf(_normalized(y, mean, jax.lax.rsqrt(var + eps), scale, bias)[1])
    # The pool as a reduction over the pair axis, not a maximum of the two halves: XLA:CPU builds the next
    # convolution's weight gradient from a transposed copy of this output and fused a maximum (with the
    # BatchNorm and GELU before it) into that copy, recomputing them from y read in transposed order; it does
    # not fuse a reduction there. Basenji2'' fp32 train step 4.25 -> 3.78 s on an Intel Xeon
    # (docs/benchmarks.md); the deviceless H200 program is the same either way.
    return g.max(axis=2).astype(y.dtype), mean, var, _takes_first(g)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def bn_gelu_pool(y: jax.Array, scale: jax.Array, bias: jax.Array, eps: float):
    """`y` `[batch, length, C]` -> (`[batch, length // 2, C]`, batch mean `[C]`, biased var `[C]`).

    Statistics are at least float32. The mean and variance outputs feed the
    running statistics only, under stop_gradient: their cotangents are ignored.
    """
    return _forward(y, scale, bias, eps)[:3]


def _fwd(y, scale, bias, eps):
    pooled, mean, var, first = _forward(y, scale, bias, eps)
    # The pool's choice (1 byte per pair) is kept for the GPU backward, where recomputing it costs a read of
    # y per pass; the CPU backward recomputes it in its one pass over y (the residual is then unused, for
    # XLA to drop).
    return (pooled, mean, var), (y, mean, var, scale, bias, first)


def _input_grad_terms(y, dz, first, mean, rstd, scale, bias, for_gpu: bool):
    """(xhat, du = d loss / d BatchNorm output) `[batch, length, C]`, f32, from `y` and the pooled cotangent
    `dz` `[batch, length // 2, C]`; off the GPU `first` (the pool's choice) is recomputed, not read."""
    b, n, c = y.shape
    xhat, u = _normalized(y, mean, rstd, scale, bias)
    dz = dz.astype(mean.dtype)
    if for_gpu:  # a broadcast select: XLA:GPU fuses it into the reductions that read du, a concatenate not
        is_first = jax.lax.broadcasted_iota(jnp.int32, (1, 1, 2, 1), 2) == 0
        da = jnp.where(is_first == first[:, :, None], dz[:, :, None], 0)
    else:  # a stack: with the select XLA:CPU's train step needed 0.33 GB more temp memory
        first = _takes_first(gelu_erf(u))
        da = jnp.stack([jnp.where(first, dz, 0), jnp.where(first, 0, dz)], axis=2)
    gelu_grad = 0.5 * (1.0 + jax.lax.erf(u * _SQRT_HALF)) + u * _INV_SQRT_2PI * jnp.exp(-0.5 * u * u)
    du = (da * gelu_grad).reshape(b, n - n % 2, c)
    if n % 2:  # the odd last position is dropped by the pool: no gradient through it
        du = jnp.pad(du, ((0, 0), (0, 1), (0, 0)))
    return xhat, du


def _input_grad(du, xhat, rstd, scale, d_bias, d_scale, count):
    """d BatchNorm input from du = d BatchNorm output, both `[batch, length, C]`, over `count` positions."""
    return (rstd * scale) * (du - d_bias / count - xhat * (d_scale / count))


def _bwd(eps, residuals, cotangents):
    y, mean, var, scale, bias, first = residuals
    rstd = jax.lax.rsqrt(var + eps)
    count = y.shape[0] * y.shape[1]

    def input_grads(y, dz, first, for_gpu: bool):
        terms = lambda y, dz, first: _input_grad_terms(y, dz, first, mean, rstd, scale, bias, for_gpu)
        xhat, du = terms(y, dz, first)
        d_bias = du.sum(axis=(0, 1))
        if for_gpu:  # each reader of du recomputes it from its own copy of the inputs (see below)
            xhat, du = terms(*jax.lax.optimization_barrier((y, dz, first, d_bias))[:3])
        d_scale = (du * xhat).sum(axis=(0, 1))
        if for_gpu:
            y, dz, first, d_bias, d_scale = jax.lax.optimization_barrier((y, dz, first, d_bias, d_scale))
            xhat, du = terms(y, dz, first)
        return _input_grad(du, xhat, rstd, scale, d_bias, d_scale, count).astype(y.dtype), d_scale, d_bias

    # du (f32, twice the size of y) has three readers: the two sums and dy. A GPU is memory-bound here, so
    # there each reader recomputes du from y and dz instead of reading it back (docs/benchmarks.md); XLA
    # never duplicates such a producer into several consumers by itself, hence the optimization barriers,
    # each with a distinct extra operand so that CSE does not merge them. A CPU is compute-bound: there du
    # is computed once and stored (recomputing it made the block 17 % slower).
    # Called through the module (not imported by name) so that a test can make a CPU take the GPU's form.
    return ops.per_platform(y, cotangents[0], first, cpu=functools.partial(input_grads, for_gpu=False),
                            gpu=functools.partial(input_grads, for_gpu=True))


bn_gelu_pool.defvjp(_fwd, _bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float):
    """Train-mode BatchNorm: `x` `[batch, length, C]` -> (output in x's dtype, batch mean `[C]`, biased
    var `[C]`); statistics at least float32, their cotangents ignored (as `bn_gelu_pool`'s).

    Under autodiff, XLA:GPU's backward of each dilated block's BatchNorm wrote two f32 arrays the size
    of its input and read them back (docs/benchmarks.md). This backward keeps x (and the `[C]` statistics)
    and recomputes x-hat in its two passes: one reduction (d scale, d bias), one elementwise pass (d x).
    """
    return _batch_norm(x, scale, bias, eps)


def _batch_norm(x, scale, bias, eps):
    mean, var = batch_moments(x)
    return normalize(x, mean, var, scale, bias, eps), mean, var


def _bn_fwd(x, scale, bias, eps):
    out, mean, var = _batch_norm(x, scale, bias, eps)
    return (out, mean, var), (x, mean, var, scale)


def _bn_bwd(eps, residuals, cotangents):
    x, mean, var, scale = residuals
    rstd = jax.lax.rsqrt(var + eps)
    xhat = _xhat(x, mean, rstd)
    dy = cotangents[0].astype(mean.dtype)
    count = x.shape[0] * x.shape[1]
    d_bias, d_scale = channel_sums(dy, dy * xhat)
    dx = _input_grad(dy, xhat, rstd, scale, d_bias, d_scale, count)
    return dx.astype(x.dtype), d_scale.astype(scale.dtype), d_bias.astype(scale.dtype)


batch_norm.defvjp(_bn_fwd, _bn_bwd)
