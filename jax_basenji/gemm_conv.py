"""1-D "same" convolutions as matmuls: the GPU layout's stem and dilated convolutions (`ModelConfig.gemm_convs`).

cuDNN pads the stem's 4 input channels and runs the dilated weight gradients as slow forward
convolutions (docs/benchmarks.md); a matmul does neither. Both forms compute exactly
y[t] = sum_j x[t + (j - h) d] . W_j, with h = (k - 1) / 2 and zeros outside the sequence:

- input side (im2col): the k shifted copies of x side by side, `[B, N, k C]`, times the `[k C, W]`
  kernel. The copies are k times x's width: cheap for the stem's 4 one-hot channels.
- output side: z = x . [W_0 | ... | W_{k-1}], `[B, N, k, W]`, then y[t] = sum_j z[t + (j - h) d, j].
  The shifted arrays are W wide, not C: the dilated convs map 768 channels to 384, and their backward
  shifts the 384-wide dy instead of re-reading three 768-wide copies of x. Compiled for an H200
  (deviceless; Basenji2'' bf16 train step, batch 4), the step moves 15.48 GB instead of 16.67.

`conv` picks the narrower side. The output side accumulates its k products in at least float32 and
rounds its output and both gradients once to the inputs' dtypes, as one matmul does; its hand-written
backward keeps the cotangents in x's dtype, so that the gradient matmuls run in bf16 too. It has no
forward-mode derivative (jax.jvp), which nothing here uses. The input side is plain autodiff: in bf16
its d x adds the k taps' bf16 cotangents (training never uses the stem's d x; bf16 attribution does).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def conv(x: jax.Array, kernel: jax.Array, dilation: int) -> jax.Array:
    """`x` `[batch, length, C]` * `kernel` `[k, C, W]` (k odd) -> `[batch, length, W]`, in x's dtype."""
    k, c, w = kernel.shape
    if k % 2 == 0:
        raise ValueError(f"a 'same' convolution needs an odd kernel, not {k} wide")
    if k > 1 and w < c:
        return _output_side(x, kernel, dilation)
    return _input_side(x, kernel, dilation)


def _shifted(a: jax.Array, s: int) -> jax.Array:
    """`a` `[batch, length, ...]` -> out[:, t] = a[:, t + s], 0 where t + s falls outside the sequence."""
    widths = [(0, 0)] * a.ndim
    widths[1] = (max(-s, 0), max(s, 0))
    return jax.lax.slice_in_dim(jnp.pad(a, widths), max(s, 0), max(s, 0) + a.shape[1], axis=1)


def _accumulator(dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def _input_side(x, kernel, dilation):
    """`[batch, length, C]` -> `[batch, length, W]` through the `[batch, length, k C]` shifted copies of x."""
    k, c, w = kernel.shape
    cols = jnp.concatenate([_shifted(x, (j - k // 2) * dilation) for j in range(k)], axis=-1)
    # Plain autodiff, in x's dtype: a float32 result here would make its backward matmuls mix float32
    # cotangents with bfloat16 operands.
    return cols @ kernel.reshape(k * c, w)


def _side_by_side(kernel: jax.Array) -> jax.Array:
    """`[k, C, W]` -> `[C, k W]`: [W_0 | ... | W_{k-1}]."""
    k, c, w = kernel.shape
    return kernel.transpose(1, 0, 2).reshape(c, k * w)


def _shift_add(x, kernel, dilation):
    """`[batch, length, C]` -> `[batch, length, W]`: z = x . [W_0 | ... | W_{k-1}] `[batch, length, k, W]`
    in at least float32, y[t] = sum_j z[t + (j - h) d, j], rounded to x's dtype."""
    k, c, w = kernel.shape
    b, n, _ = x.shape
    z = jax.lax.dot_general(x, _side_by_side(kernel), (((2,), (0,)), ((), ())),
                            preferred_element_type=_accumulator(x.dtype)).reshape(b, n, k, w)
    taps = [_shifted(z[:, :, j], (j - k // 2) * dilation) for j in range(k)]
    return functools.reduce(jnp.add, taps).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _output_side(x, kernel, dilation):
    return _shift_add(x, kernel, dilation)


def _output_side_fwd(x, kernel, dilation):
    # In training y has several readers (the BatchNorm's passes, forward and backward): stored in x's
    # dtype, once, rather than kept as the float32 sum that XLA would otherwise re-read. In inference
    # (the primal) the sum fuses into y's one reader.
    return jax.lax.optimization_barrier(_shift_add(x, kernel, dilation)), (x, kernel)


def _output_side_bwd(dilation, residuals, dy):
    """d z[:, s, j] = dy[:, s - (j - h) d]: k shifted copies of the W-wide dy, then two matmuls."""
    x, kernel = residuals
    k, c, w = kernel.shape
    acc = _accumulator(x.dtype)
    # Built once for both matmuls (without the barrier XLA writes it twice, once for each).
    dz = jax.lax.optimization_barrier(
        jnp.concatenate([_shifted(dy, -(j - k // 2) * dilation) for j in range(k)], axis=-1))
    dx = jax.lax.dot_general(dz, _side_by_side(kernel), (((2,), (1,)), ((), ())), preferred_element_type=acc)
    d_side = jax.lax.dot_general(x, dz, (((0, 1), (0, 1)), ((), ())), preferred_element_type=acc)
    return dx.astype(x.dtype), d_side.reshape(c, k, w).transpose(1, 0, 2).astype(kernel.dtype)


_output_side.defvjp(_output_side_fwd, _output_side_bwd)
