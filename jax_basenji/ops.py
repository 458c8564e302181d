"""Elementwise and pooling ops shared by the model and its fused training op.

GELU in the three forms Basenji2 ports use, torch's Softplus, floor max-pool of 2,
and BatchNorm's batch statistics; all on `[batch, length, channels]` where it matters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def gelu_erf(x: jax.Array) -> jax.Array:
    # torch.nn.GELU() default is the exact erf form; flax/jax default to tanh. Written as torch writes it,
    # 0.5 x (1 + erf(x / sqrt 2)): jax.nn.gelu's erfc form reads its argument so often that XLA:GPU stores
    # the f32 BatchNorm output before the GELU instead of recomputing it where it is read (docs/benchmarks.md).
    return 0.5 * x * (1.0 + jax.lax.erf(x * 0.7071067811865476))


def gelu_tanh(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


def gelu_sigmoid(x: jax.Array) -> jax.Array:
    # basenji's layers.GELU when the published weights were trained (before 2022).
    return jax.nn.sigmoid(1.702 * x) * x


GELUS = {"erf": gelu_erf, "tanh": gelu_tanh, "sigmoid": gelu_sigmoid}


def softplus(x: jax.Array) -> jax.Array:
    # torch.nn.Softplus(beta=1, threshold=20) returns x itself above 20.
    return jnp.where(x > 20.0, x, jax.nn.softplus(x))


def accumulation_dtype(dtype) -> jnp.dtype:
    """bfloat16 -> float32; float32/float64 unchanged: the dtype sums and statistics are computed in."""
    return jnp.promote_types(dtype, jnp.float32)


def at_least_f32(x: jax.Array) -> jax.Array:
    """bfloat16 -> float32; float32/float64 unchanged (statistics and outputs)."""
    return x.astype(accumulation_dtype(x.dtype))


def max_pool2(x: jax.Array) -> jax.Array:
    """`[batch, length, channels]` -> `[batch, length // 2, channels]` (floor, like torch)."""
    b, n, c = x.shape
    n2 = n // 2
    return x[:, : 2 * n2].reshape(b, n2, 2, c).max(axis=2)


def per_platform(*args, cpu, gpu):
    """`cpu(*args)` when compiled for a CPU, `gpu(*args)` otherwise: the one place where the maths takes a
    backend's form (XLA lowers only the branch of the platform it compiles for). Both forms compute the same
    values; tests run the GPU's form on a CPU by replacing this function (tests/test_model.py)."""
    return jax.lax.platform_dependent(*args, cpu=cpu, default=gpu)


# Positions between the samples that estimate the shift of `batch_moments` (a 1/64 read of the input).
_SHIFT_STRIDE = 64
# `channel_sums` on a GPU: below this many rows (batch x length) it sums row groups first, into about this
# many partial sums per array (deviceless H200 compiles, docs/benchmarks.md).
_GROUPED_BELOW = 8192
_PARTIAL_SUMS = 12_288
# `channel_sums` on a CPU: runs of up to this many positions are summed first (measured best of 8-64).
_CPU_RUN = 16


def channel_sums(*xs: jax.Array) -> tuple[jax.Array, ...]:
    """Per-channel sums of `[batch, length, C]` arrays of one shape over batch and length: `[C]` each.

    Before some such sums XLA stores the elementwise producer's output and reads it back (which ones
    depends on the backend: `_cpu_sums`, `_gpu_sums`). Those are split in two, behind a barrier that keeps
    XLA from merging the halves again: within each example over runs of positions first (fused with the
    producer, the input read once), then over those. Grouping within examples keeps a batch-sharded array's
    partial sums on their own devices. The partial sums keep the inputs' dtype: callers pass float32 or
    wider.
    """
    return per_platform(*xs, cpu=_cpu_sums, gpu=_gpu_sums)


def _grouped_sums(xs: tuple[jax.Array, ...], groups: int) -> tuple[jax.Array, ...]:
    """Sums over `groups` runs of positions per example first, then over those."""
    b, n, c = xs[0].shape
    partial = tuple(x.reshape(b, groups, n // groups, c).sum(axis=2) for x in xs)
    return tuple(p.sum(axis=(0, 1)) for p in jax.lax.optimization_barrier(partial))


def _cpu_sums(*xs: jax.Array) -> tuple[jax.Array, ...]:
    """XLA:CPU rewrites a sum over more than 32 positions into a tree of reduce-windows, which are not fused
    with their producer: the moments of `[1, 131072, 288]` stored x - k and its square, 108 ms; summed over
    runs of 16 positions first 17 ms (docs/benchmarks.md)."""
    n = xs[0].shape[1]
    run = math.gcd(n, _CPU_RUN)  # the longest run (a power of two up to 16) that tiles the length
    return tuple(x.sum(axis=(0, 1)) for x in xs) if run == 1 else _grouped_sums(xs, n // run)


def _gpu_sums(*xs: jax.Array) -> tuple[jax.Array, ...]:
    """XLA:GPU will not fuse an elementwise producer into a per-channel sum of few rows (4,096 x 768 in a
    batch-4 dilated block): it writes the producer's float32 output and sums it in a second kernel, 3-5x the
    bytes of the input. Grouped into >= 12,288 partial sums (as far as the length halves evenly), it reads
    the input once. From 8,192 rows XLA splits the sum itself and fuses it with its neighbours (the grouped
    form broke that up: +0.8 GB in a batch-16 train step), so those get plain sums."""
    b, n, c = xs[0].shape
    groups = 1
    while b * groups * c < _PARTIAL_SUMS and n % (2 * groups) == 0 and 2 * groups <= n:
        groups *= 2
    if b * n >= _GROUPED_BELOW or b * groups == 1:
        return tuple(x.sum(axis=(0, 1)) for x in xs)
    return _grouped_sums(xs, groups)


def batch_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and *biased* variance of `[batch, length, C]` over batch and length, >= float32.

    One pass over `x` (both sums in one read; the textbook two-pass form reads it twice), about a shift k
    close to the mean, so that E[(x - k)^2] - E[x - k]^2 does not cancel: k is the mean of every 64th
    position, outside the gradient (the moments' derivatives do not depend on k).
    """
    xf = at_least_f32(x)
    k = jax.lax.stop_gradient(xf[:, ::_SHIFT_STRIDE].mean(axis=(0, 1)))
    d = xf - k
    count = x.shape[0] * x.shape[1]
    m1, m2 = (s / count for s in channel_sums(d, jnp.square(d)))
    return k + m1, jnp.maximum(m2 - jnp.square(m1), 0.0)


def normalize(x: jax.Array, mean: jax.Array, var: jax.Array, scale: jax.Array, bias: jax.Array,
              eps: float) -> jax.Array:
    """BatchNorm's affine normalisation of `[batch, length, C]` by `[C]` statistics, computed in at least
    float32, returned in x's dtype."""
    return ((at_least_f32(x) - mean) * jax.lax.rsqrt(var + eps) * scale + bias).astype(x.dtype)


def fill_n(one_hot: jax.Array, value: float) -> jax.Array:
    """`[..., L, 4]` one-hot with its all-zero (N) rows set to `value` in every channel (kipoiseq's
    0.25); the input's dtype is kept unless it cannot hold `value` (then float32). `value` may be traced
    (the train step's: then the rows are filled whatever it is, 0 included, which leaves them as they are)."""
    if not isinstance(value, jax.Array) and not value:
        return one_hot
    x = one_hot if jnp.issubdtype(one_hot.dtype, jnp.floating) else one_hot.astype(jnp.float32)
    return jnp.where((x == 0).all(axis=-1, keepdims=True), jnp.asarray(value, x.dtype), x)
