"""Basenji2 in Flax NNX, channels-last end to end.

Block names follow the architecture (stem, tower, dilated, final, heads) so
the conversion table in `jax_basenji.convert_table` reads 1:1 against the
seed's torch keys. Numerics follow the seed exactly: exact-erf GELU, torch
Softplus (threshold 20), symmetric "same" padding, BatchNorm with PyTorch
momentum semantics and the unbiased running variance.

Train/eval switching uses NNX's convention: `model.train()` / `model.eval()`
flip `use_running_average` on every BatchNorm and `deterministic` on every
Dropout. Dropout draws from the explicit `dropout` stream of the `nnx.Rngs`
given at construction (or passed to `__call__`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jax_basenji.config import ModelConfig
from jax_basenji.fused import bn_gelu_pool


def gelu(x: jax.Array) -> jax.Array:
    # torch.nn.GELU() default is the exact erf form; flax/jax default to tanh.
    return jax.nn.gelu(x, approximate=False)


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


class BatchNorm(nnx.Module):
    """BatchNorm over `[batch, length, channels]` with torch's update rule.

    running = (1 - m) * running + m * batch, with the *unbiased* batch variance
    for `var` (torch) while normalising with the biased one. Statistics are
    at least float32 whatever the compute dtype. `count` mirrors num_batches_tracked.
    """

    def __init__(self, channels: int, *, momentum: float, eps: float):
        self.momentum = momentum
        self.eps = eps
        self.use_running_average = False
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((channels,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((channels,), jnp.float32))
        self.count = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = at_least_f32(x)
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            mean = xf.mean(axis=(0, 1))
            var = jnp.square(xf - mean).mean(axis=(0, 1))
            self.update(mean, var, x.shape[0] * x.shape[1])
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
        return y.astype(x.dtype)

    def update(self, mean: jax.Array, var: jax.Array, n: int) -> None:
        """Running statistics from a batch's mean and biased variance over `n` positions."""
        m = self.momentum
        self.mean[...] = (1.0 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
        unbiased = var * (n / max(n - 1, 1))
        self.var[...] = (1.0 - m) * self.var[...] + m * jax.lax.stop_gradient(unbiased)
        self.count[...] = self.count[...] + 1


def Conv(cin: int, cout: int, kernel: int, *, dilation: int = 1, dtype: str,
         rngs: nnx.Rngs) -> nnx.Conv:
    """1-D convolution with symmetric "same" padding (torch's), kernel `[k, in, out]`."""
    pad = dilation * (kernel - 1) // 2
    return nnx.Conv(cin, cout, (kernel,), padding=[(pad, pad)], kernel_dilation=(dilation,),
                    dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


class ConvPoolBlock(nnx.Module):
    """Conv -> BN -> GELU -> MaxPool(2): the stem and every tower block."""

    def __init__(self, cin: int, cout: int, kernel: int, cfg: ModelConfig, rngs: nnx.Rngs):
        self.conv = Conv(cin, cout, kernel, dtype=cfg.dtype, rngs=rngs)
        self.bn = BatchNorm(cout, momentum=cfg.bn_momentum, eps=cfg.bn_eps)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv(x)
        if self.bn.use_running_average:
            return max_pool2(gelu(self.bn(y)))
        # Training: one op with a hand-written backward (jax_basenji.fused).
        z, mean, var = bn_gelu_pool(y, self.bn.scale[...], self.bn.bias[...], self.bn.eps)
        self.bn.update(mean, var, y.shape[0] * y.shape[1])
        return z


class DilatedResidual(nnx.Module):
    """One dilated residual block, `[batch, bins, C]` -> same shape.

    branch = Conv(k=3, d) -> BN -> GELU -> Conv(k=1) -> BN -> Dropout.
    basenji2-prime:        x + GELU(branch(x))
    basenji2-double-prime: GELU(x + branch(x))
    """

    def __init__(self, dilation: int, cfg: ModelConfig, rngs: nnx.Rngs):
        c, b = cfg.trunk_channels, cfg.bottleneck_channels
        self.gelu_after_add = cfg.variant == "basenji2-double-prime"
        self.conv1 = Conv(c, b, cfg.dilated_kernel, dilation=dilation, dtype=cfg.dtype, rngs=rngs)
        self.bn1 = BatchNorm(b, momentum=cfg.bn_momentum, eps=cfg.bn_eps)
        self.conv2 = Conv(b, c, 1, dtype=cfg.dtype, rngs=rngs)
        self.bn2 = BatchNorm(c, momentum=cfg.bn_momentum, eps=cfg.bn_eps)
        self.dropout = nnx.Dropout(cfg.residual_dropout, rngs=rngs)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        y = gelu(self.bn1(self.conv1(x)))
        y = self.dropout(self.bn2(self.conv2(y)), rngs=rngs)
        if self.gelu_after_add:
            return gelu(x + y)
        return x + gelu(y)


class Final(nnx.Module):
    """Conv(k=1) -> BN -> Dropout -> GELU, `[batch, bins, trunk]` -> `[batch, bins, final]`."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.conv = Conv(cfg.trunk_channels, cfg.final_channels, 1, dtype=cfg.dtype, rngs=rngs)
        self.bn = BatchNorm(cfg.final_channels, momentum=cfg.bn_momentum, eps=cfg.bn_eps)
        self.dropout = nnx.Dropout(cfg.final_dropout, rngs=rngs)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        return gelu(self.dropout(self.bn(self.conv(x)), rngs=rngs))


class Head(nnx.Module):
    """Linear -> Softplus, `[batch, bins, final]` -> `[batch, bins, tracks]` (>= float32)."""

    def __init__(self, channels: int, tracks: int, cfg: ModelConfig, rngs: nnx.Rngs):
        self.linear = nnx.Linear(channels, tracks, dtype=cfg.dtype, param_dtype=jnp.float32, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return softplus(at_least_f32(self.linear(x)))


def _run_block(block: nnx.Module, x: jax.Array, *args) -> jax.Array:
    return block(x, *args)


class Basenji2(nnx.Module):
    """Basenji2' / Basenji2'': `[batch, length, 4]` -> `[batch, bins, tracks]`."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        widths = [cfg.stem_channels, *cfg.tower_channels]
        self.stem = ConvPoolBlock(4, cfg.stem_channels, cfg.stem_kernel, cfg, rngs)
        self.tower = nnx.List([ConvPoolBlock(widths[i], widths[i + 1], cfg.tower_kernel, cfg, rngs)
                               for i in range(cfg.tower_layers)])
        self.dilated = nnx.List([DilatedResidual(d, cfg, rngs) for d in cfg.dilations])
        self.final = Final(cfg, rngs)
        self.heads = nnx.Dict({name: Head(cfg.final_channels, tracks, cfg, rngs)
                               for name, tracks in cfg.heads})

    def embed(self, sequence: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Trunk + final block: `[batch, length, 4]` -> `[batch, bins, final_channels]`."""
        # With cfg.remat each block's activations are recomputed in the backward pass.
        run = nnx.remat(_run_block) if self.cfg.remat else _run_block
        x = run(self.stem, sequence.astype(self.cfg.dtype))
        for block in self.tower:
            x = run(block, x)
        for block in self.dilated:
            x = run(block, x, rngs)
        crop = self.cfg.crop_bins
        x = x[:, crop: x.shape[1] - crop]
        return run(self.final, x, rngs)

    def __call__(self, sequence: jax.Array, head: str = "human",
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        if head not in self.heads:
            raise KeyError(f"unknown head {head!r}; this model has {sorted(self.heads)}")
        return self.heads[head](self.embed(sequence, rngs=rngs))


def build_model(cfg: ModelConfig, seed: int = 0) -> Basenji2:
    """A freshly initialised model in train mode; `seed` drives init and dropout."""
    return Basenji2(cfg, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
