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

`conv` picks the narrower side. Both accumulate in at least float32 and round the output and both
gradients once to the inputs' dtypes, as one convolution does (autodiff of the sum of shifted taps
would add them in bf16); their hand-written backward passes keep the cotangents in x's dtype, so that
the gradient matmuls run in bf16 too. Neither has a forward-mode derivative (jax.jvp), which nothing
here uses.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jax_basenji.ops import accumulation_dtype


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


def _columns(x, k, dilation):
    """`[batch, length, C]` -> `[batch, length, k C]`: out[:, t, j-th C block] = x[:, t + (j - h) d]."""
    return jnp.concatenate([_shifted(x, (j - k // 2) * dilation) for j in range(k)], axis=-1)


def _tap_sum(z, dilation):
    """`[batch, length, k, W]` -> `[batch, length, W]`: out[:, t] = sum_j z[:, t + (j - h) d, j] (the
    transpose of `_columns` for -d)."""
    k = z.shape[2]
    return functools.reduce(jnp.add, [_shifted(z[:, :, j], (j - k // 2) * dilation) for j in range(k)])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _input_side(x, kernel, dilation):
    """`[batch, length, C]` -> `[batch, length, W]`: the shifted copies of x times the `[k C, W]` kernel."""
    return _input_side_fwd(x, kernel, dilation)[0]


def _input_side_fwd(x, kernel, dilation):
    k, c, w = kernel.shape
    cols = _columns(x, k, dilation)
    return cols @ kernel.reshape(k * c, w), (cols, kernel)  # one matmul: float32 accumulation on a GPU


def _input_side_bwd(dilation, residuals, dy):
    """d x[:, s] = sum_j d cols[:, s - (j - h) d, j-th C block], summed in at least float32 and rounded
    once (autodiff would add the k taps in bf16; training drops d x, attribution reads it)."""
    cols, kernel = residuals
    k, c, w = kernel.shape
    acc = accumulation_dtype(dy.dtype)
    d_cols = jax.lax.dot_general(dy, kernel.reshape(k * c, w), (((2,), (1,)), ((), ())), preferred_element_type=acc)
    dx = _tap_sum(d_cols.reshape(*dy.shape[:2], k, c), -dilation)
    d_kernel = jax.lax.dot_general(cols, dy, (((0, 1), (0, 1)), ((), ())), preferred_element_type=acc)
    return dx.astype(cols.dtype), d_kernel.reshape(k, c, w).astype(kernel.dtype)


_input_side.defvjp(_input_side_fwd, _input_side_bwd)


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
                            preferred_element_type=accumulation_dtype(x.dtype)).reshape(b, n, k, w)
    return _tap_sum(z, dilation).astype(x.dtype)


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
    acc = accumulation_dtype(x.dtype)
    # Built once for both matmuls (without the barrier XLA writes it twice, once for each).
    dz = jax.lax.optimization_barrier(_columns(dy, k, -dilation))
    dx = jax.lax.dot_general(dz, _side_by_side(kernel), (((2,), (1,)), ((), ())), preferred_element_type=acc)
    d_side = jax.lax.dot_general(x, dz, (((0, 1), (0, 1)), ((), ())), preferred_element_type=acc)
    return dx.astype(x.dtype), d_side.reshape(c, k, w).transpose(1, 0, 2).astype(kernel.dtype)


_output_side.defvjp(_output_side_fwd, _output_side_bwd)
