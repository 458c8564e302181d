"""Basenji2 in Flax NNX, channels-last end to end.

Block names follow the architecture (stem, tower, dilated, final, heads) so
each conversion table in `jax_basenji.convert` reads 1:1 against the foreign
keys. One module tree serves every variant; the config picks the block form:
seed variants Conv -> BN -> GELU (exact erf GELU, conv bias, torch BatchNorm:
epsilon 1e-5, unbiased running variance), the published `basenji2` GELU ->
Conv -> BN (sigmoid GELU, no conv bias, Keras BatchNorm: epsilon 1e-3, biased
running variance). Softplus is torch's (threshold 20), "same" padding symmetric.

Train/eval switching uses NNX's convention: `model.train()` / `model.eval()`
flip `use_running_average` on every BatchNorm and `deterministic` on every
Dropout. Dropout draws from the explicit `dropout` stream of the `nnx.Rngs`
given at construction (or passed to `__call__`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.linear import default_kernel_init

from jax_basenji import gemm_conv
from jax_basenji.config import ModelConfig
from jax_basenji.fused import batch_norm, bn_gelu_pool
from jax_basenji.ops import GELUS, at_least_f32, max_pool2, normalize, softplus


def _assign(variable: nnx.Variable, value: jax.Array) -> None:
    """`variable[...] = value` for a value of the variable's shape. flax's `[...] =` compares the shardings
    of both, and a tracer's raises an AttributeError whose message JAX builds by walking the traced
    program: ~7 ms per statistic (tracing the tiny train step: 1.9 s -> 1.5 s, docs/benchmarks.md)."""
    variable.set_value(value.astype(variable.dtype))


class BatchNorm(nnx.Module):
    """BatchNorm over `[batch, length, channels]` with torch's momentum convention.

    running = (1 - m) * running + m * batch (Keras' momentum k is m = 1 - k). The
    running `var` takes the *unbiased* batch variance (torch) or the biased one
    (Keras, `unbiased=False`); normalisation always uses the biased one. Statistics
    are at least float32 whatever the compute dtype. `count` mirrors num_batches_tracked.
    """

    def __init__(self, channels: int, *, momentum: float, eps: float, unbiased: bool = True,
                 zero_scale: bool = False, dtype=jnp.float32):
        self.momentum = momentum
        self.eps = eps
        self.unbiased = unbiased
        self.use_running_average = False
        # zero_scale: Keras init of a residual branch's last BN (the block starts as identity).
        self.scale = nnx.Param(jnp.full((channels,), 0.0 if zero_scale else 1.0, dtype))
        self.bias = nnx.Param(jnp.zeros((channels,), dtype))
        self.mean = nnx.BatchStat(jnp.zeros((channels,), dtype))
        self.var = nnx.BatchStat(jnp.ones((channels,), dtype))
        self.count = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x: jax.Array, offset: jax.Array | None = None) -> jax.Array:
        """Normalise `x + offset` (`offset` `[channels]`: the bias of the conv before, folded in here):
        in training the offset cancels in x - mean and only enters the running mean; in eval it shifts
        the running mean. Same result, one add less per element, and no bias in the conv kernel.

        `x` `[batch, length, width]` may be wider than the layer (compute padding, `Conv`): the extra
        channels get scale and shift 0, so zeros stay zeros, and stay out of the running statistics."""
        width = x.shape[-1]
        if not self.use_running_average:  # training: a hand-written backward (jax_basenji.fused)
            y, mean, var = batch_norm(x, *self.affine(width), self.eps)
            self.update(mean, var, x.shape[0] * x.shape[1], offset)
            return y
        mean = self.mean[...] if offset is None else self.mean[...] - offset
        mean, var = _pad_to(mean, width), _pad_to(self.var[...], width, 1.0)
        return normalize(x, mean, var, *self.affine(width), self.eps)

    def affine(self, width: int) -> tuple[jax.Array, jax.Array]:
        """scale and shift `[width]`, zero past the layer's channels."""
        return _pad_to(self.scale[...], width), _pad_to(self.bias[...], width)

    def update(self, mean: jax.Array, var: jax.Array, n: int, offset: jax.Array | None = None) -> None:
        """Running statistics from a batch's mean and biased variance over `n` positions (`[width]`,
        the layer's channels first), plus `offset` on the mean (the folded conv bias)."""
        c, m = self.mean.shape[0], self.momentum
        mean, var = mean[:c], var[:c]
        mean = mean if offset is None else mean + offset
        _assign(self.mean, (1.0 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean))
        if self.unbiased:
            var = var * (n / max(n - 1, 1))
        _assign(self.var, (1.0 - m) * self.var[...] + m * jax.lax.stop_gradient(var))
        _assign(self.count, self.count[...] + 1)


def _pad_to(v: jax.Array, width: int, value: float = 0.0) -> jax.Array:
    """`[c]` -> `[width]`, `value` past c."""
    return v if v.shape[0] == width else jnp.pad(v, (0, width - v.shape[0]), constant_values=value)


def param_dtype(cfg: ModelConfig):
    """float32 parameters and statistics, float64 for the float64 exactness tests (under jax x64)."""
    return jnp.float64 if cfg.dtype == "float64" else jnp.float32


def _kernel_init(cfg: ModelConfig):
    # Keras' he_normal is a truncated normal with variance 2 / fan_in, as jax's; else flax's default.
    return jax.nn.initializers.he_normal() if cfg.init == "keras" else default_kernel_init


class Conv(nnx.Module):
    """1-D convolution with symmetric "same" padding (torch's and Keras' for odd kernels), kernel `[k, in, out]`.

    Every conv of the model feeds a BatchNorm, which takes its bias (`conv_bn`): the conv holds the
    `bias` parameter (checkpoints unchanged) but does not add it, so XLA:GPU compiles a plain
    convolution instead of cuDNN's conv + bias + activation call. Parameters keep their true widths;
    the compute path may zero-pad channels and run as matmuls (`__call__`, `gemm_conv`).
    """

    def __init__(self, cin: int, cout: int, kernel: int, cfg: ModelConfig, rngs: nnx.Rngs, *,
                 dilation: int = 1):
        self.dilation = dilation
        self.dtype = jnp.dtype(cfg.dtype)
        self.kernel = nnx.Param(_kernel_init(cfg)(rngs.params(), (kernel, cin, cout), param_dtype(cfg)))
        self.bias = nnx.Param(jnp.zeros((cout,), param_dtype(cfg))) if cfg.conv_bias else nnx.data(None)

    def __call__(self, x: jax.Array, width: int | None = None, gemm: bool = False) -> jax.Array:
        """`[batch, length, c]` -> `[batch, length, width]` (default: the true output width), no bias.

        `c` and `width` may exceed the kernel's widths: the kernel is zero-padded to them, so padded
        input channels are ignored and padded outputs are exactly 0 (their gradients too). `gemm`:
        the convolution as matmuls (`gemm_conv.conv`), whose weight gradient is a matmul as well (cuDNN runs
        dilated weight gradients slowly)."""
        kernel = self.kernel[...]
        k, cin, cout = kernel.shape
        width = width or cout
        if (x.shape[-1], width) != (cin, cout):
            kernel = jnp.pad(kernel, ((0, 0), (0, x.shape[-1] - cin), (0, width - cout)))
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        if gemm:
            return gemm_conv.conv(x, kernel, self.dilation)
        pad = self.dilation * (k - 1) // 2
        return jax.lax.conv_general_dilated(x, kernel, (1,), [(pad, pad)], rhs_dilation=(self.dilation,),
                                            dimension_numbers=("NWC", "WIO", "NWC"))


def conv_bn(conv: Conv, bn: BatchNorm, x: jax.Array, **compute) -> jax.Array:
    """BatchNorm(conv(x) + conv's bias), the bias folded into the BatchNorm (`Conv`); `compute`: `Conv`'s
    width and gemm."""
    return bn(conv(x, **compute), conv_bias(conv))


def conv_bias(conv: Conv) -> jax.Array | None:
    return None if conv.bias is None else conv.bias[...]


def Norm(channels: int, cfg: ModelConfig, zero_scale: bool = False) -> BatchNorm:
    return BatchNorm(channels, momentum=cfg.bn_momentum, eps=cfg.bn_eps, unbiased=cfg.bn_unbiased_var,
                     zero_scale=zero_scale and cfg.init == "keras", dtype=param_dtype(cfg))


class ConvPoolBlock(nnx.Module):
    """The stem and every tower block, `[batch, length, c]` -> `[batch, length // 2, width]`.

    Seed: Conv -> BN -> GELU -> MaxPool(2). Published: GELU -> Conv -> BN -> MaxPool(2).
    `width` >= cout: the compute width (channels past cout stay exactly 0; `Conv`); `c` >= cin likewise.
    """

    def __init__(self, cin: int, cout: int, kernel: int, cfg: ModelConfig, rngs: nnx.Rngs, *,
                 width: int | None = None, gemm: bool = False):
        self.pre_activation = cfg.pre_activation
        self.act = GELUS[cfg.gelu]
        # The fused train-mode op (jax_basenji.fused) is written for the seed's order and GELU.
        self.fused = not cfg.pre_activation and cfg.gelu == "erf" and cfg.bn_unbiased_var
        self.conv = Conv(cin, cout, kernel, cfg, rngs)
        self.bn = Norm(cout, cfg)
        self.compute = {"width": width or cout, "gemm": gemm}

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.pre_activation:
            return max_pool2(conv_bn(self.conv, self.bn, self.act(x), **self.compute))
        if self.bn.use_running_average or not self.fused:
            return max_pool2(self.act(conv_bn(self.conv, self.bn, x, **self.compute)))
        # Training: one op with a hand-written backward (jax_basenji.fused); the conv bias cancels in
        # the normalisation and enters the running mean only.
        y = self.conv(x, **self.compute)
        z, mean, var = bn_gelu_pool(y, *self.bn.affine(y.shape[-1]), self.bn.eps)
        self.bn.update(mean, var, y.shape[0] * y.shape[1], conv_bias(self.conv))
        return z


class DilatedResidual(nnx.Module):
    """One dilated residual block, `[batch, bins, C]` -> same shape.

    Seed branch = Conv(k=3, d) -> BN -> GELU -> Conv(k=1) -> BN -> Dropout;
      basenji2-prime: x + GELU(branch(x)); basenji2-double-prime: GELU(x + branch(x)).
    Published branch = GELU -> Conv(k=3, d) -> BN -> GELU -> Conv(k=1) -> BN -> Dropout;
      basenji2: x + branch(x) (the next block's GELU comes first).
    """

    def __init__(self, dilation: int, cfg: ModelConfig, rngs: nnx.Rngs, *, gemm: bool = False):
        c, b = cfg.trunk_channels, cfg.bottleneck_channels
        self.gemm = gemm  # the dilated conv as matmuls (`Conv`, `gemm_conv`)
        self.variant = cfg.variant
        self.act = GELUS[cfg.gelu]
        self.conv1 = Conv(c, b, cfg.dilated_kernel, cfg, rngs, dilation=dilation)
        self.bn1 = Norm(b, cfg)
        self.conv2 = Conv(b, c, 1, cfg, rngs)
        self.bn2 = Norm(c, cfg, zero_scale=True)
        self.dropout = nnx.Dropout(cfg.residual_dropout, rngs=rngs)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        act = self.act
        if self.variant == "basenji2":
            y = conv_bn(self.conv1, self.bn1, act(x), gemm=self.gemm)
            return x + self.dropout(conv_bn(self.conv2, self.bn2, act(y)), rngs=rngs)
        y = act(conv_bn(self.conv1, self.bn1, x, gemm=self.gemm))
        y = self.dropout(conv_bn(self.conv2, self.bn2, y), rngs=rngs)
        if self.variant == "basenji2-double-prime":
            return act(x + y)
        return x + act(y)


class Final(nnx.Module):
    """`[batch, bins, trunk]` -> `[batch, bins, final]`.

    Seed: Conv(k=1) -> BN -> Dropout -> GELU. Published: GELU -> Conv(k=1) -> BN -> Dropout -> GELU.
    """

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.pre_activation = cfg.pre_activation
        self.act = GELUS[cfg.gelu]
        self.conv = Conv(cfg.trunk_channels, cfg.final_channels, 1, cfg, rngs)
        self.bn = Norm(cfg.final_channels, cfg)
        self.dropout = nnx.Dropout(cfg.final_dropout, rngs=rngs)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        if self.pre_activation:
            x = self.act(x)
        return self.act(self.dropout(conv_bn(self.conv, self.bn, x), rngs=rngs))


class Head(nnx.Module):
    """Linear -> Softplus, `[batch, bins, final]` -> `[batch, bins, tracks]` (>= float32)."""

    def __init__(self, channels: int, tracks: int, cfg: ModelConfig, rngs: nnx.Rngs):
        self.linear = nnx.Linear(channels, tracks, dtype=cfg.dtype, param_dtype=param_dtype(cfg), rngs=rngs,
                                 kernel_init=_kernel_init(cfg))

    def __call__(self, x: jax.Array) -> jax.Array:
        return softplus(at_least_f32(self.linear(x)))


def _remat_block(block: nnx.Module, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """`block(x)` under jax.checkpoint (activations recomputed in the backward pass), dropout from `key`.

    Written over the block's split state rather than with nnx.remat, which cannot run
    inside the training step's merged graph (its RNG counters live at another trace
    level). Only the BatchNorm statistics it updates are written back to `block`: in
    training, dropout draws from `key`, never from the block's own RNG streams.
    """
    graphdef, state = nnx.split(block)

    def pure(state, x, key):
        inner = nnx.merge(graphdef, state)
        y = inner(x) if key is None else inner(x, nnx.Rngs(dropout=key))
        return y, nnx.state(inner, nnx.BatchStat)

    y, stats = jax.checkpoint(pure)(state, x, key)
    nnx.update(block, stats)
    return y


class Basenji2(nnx.Module):
    """Basenji2' / Basenji2'' / published Basenji2: `[batch, length, 4]` -> `[batch, bins, tracks]`."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        widths = [cfg.stem_channels, *cfg.tower_channels]
        multiple, gemm = compute_layout(cfg)
        # Compute widths: the stem's and tower's rounded up; the trunk (the last) keeps its own.
        padded = [-(-w // multiple) * multiple for w in widths[:-1]] + widths[-1:]
        self.stem = ConvPoolBlock(4, cfg.stem_channels, cfg.stem_kernel, cfg, rngs, width=padded[0],
                                  gemm="stem" in gemm)
        self.tower = nnx.List([ConvPoolBlock(widths[i], widths[i + 1], cfg.tower_kernel, cfg, rngs,
                                             width=padded[i + 1]) for i in range(cfg.tower_layers)])
        self.dilated = nnx.List([DilatedResidual(d, cfg, rngs, gemm="dilated" in gemm) for d in cfg.dilations])
        self.final = Final(cfg, rngs)
        self.heads = nnx.Dict({name: Head(cfg.final_channels, tracks, cfg, rngs)
                               for name, tracks in cfg.heads})

    def _runner(self, rngs: nnx.Rngs | None):
        """run(block, x, dropout=False): one block, under remat when the config asks for it."""
        if self.cfg.remat:  # each block's activations are recomputed in the backward pass
            # One dropout key per block with dropout, drawn before any block runs.
            keys = iter([None if rngs is None else rngs.dropout() for _ in range(len(self.dilated) + 1)])

            def run(block, x, dropout=False):
                return _remat_block(block, x, next(keys) if dropout else None)
        else:
            def run(block, x, dropout=False):
                return block(x, rngs) if dropout else block(x)
        return run

    def embed(self, sequence: jax.Array, rngs: nnx.Rngs | None = None, layer: str = "final") -> jax.Array:
        """Trunk + final block: `[batch, length, 4]` -> `[batch, bins, final_channels]`; `layer="trunk"`
        stops after the cropped dilated tower: `[batch, bins, tower_channels[-1]]`."""
        run = self._runner(rngs)
        return self.dilated_tower(self.conv_tower(sequence, run), run, layer)

    def conv_tower(self, sequence: jax.Array, run=None) -> jax.Array:
        """Stem + conv tower: `[batch, length, 4]` -> `[batch, length // bin_size, tower_channels[-1]]`.

        Local: bin j reads only bp [bin_size * j - r, bin_size * (j + 1) - 1 + r] of the input,
        r = `cfg.tower_reach` (what incremental variant scoring relies on)."""
        run = run or self._runner(None)
        x = run(self.stem, sequence.astype(self.cfg.dtype))
        for block in self.tower:
            x = run(block, x)
        return x

    def dilated_tower(self, x: jax.Array, run=None, layer: str = "final") -> jax.Array:
        """Dilated residual stack, crop, final block: `[batch, length // bin_size, tower_channels[-1]]` ->
        `[batch, bins, final_channels]` (`layer="trunk"`: before the final block)."""
        run = run or self._runner(None)
        for block in self.dilated:
            x = run(block, x, dropout=True)
        crop = self.cfg.crop_bins
        x = x[:, crop: x.shape[1] - crop]
        return x if layer == "trunk" else run(self.final, x, dropout=True)

    def from_tower(self, x: jax.Array, head: str) -> jax.Array:
        """A head's output from the conv tower's: `[batch, length // bin_size, C]` -> `[batch, bins, tracks]`."""
        return self.heads[head](self.dilated_tower(x))

    def __call__(self, sequence: jax.Array, head: str = "human",
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        if head not in self.heads:
            raise KeyError(f"unknown head {head!r}; this model has {sorted(self.heads)}")
        return self.heads[head](self.embed(sequence, rngs=rngs))


# What "auto" means on a GPU (ModelConfig.channel_multiple, gemm_convs).
GPU_LAYOUT = {"channel_multiple": 8, "gemm_convs": "stem,dilated"}


def compute_layout(cfg: ModelConfig) -> tuple[int, tuple[str, ...]]:
    """(channel multiple, convolutions run as matmuls) of `cfg`, "auto" resolved for this machine's
    default backend: on a GPU, channels to multiples of 8 and the stem and dilated convs as matmuls
    (per-layer H200 measurements in docs/benchmarks.md); elsewhere the plain convolutions."""
    auto = GPU_LAYOUT if jax.default_backend() == "gpu" else {"channel_multiple": 1, "gemm_convs": "none"}
    multiple = cfg.channel_multiple or auto["channel_multiple"]
    gemm = auto["gemm_convs"] if cfg.gemm_convs == "auto" else cfg.gemm_convs
    return multiple, tuple(g for g in gemm.split(",") if g != "none")


def build_model(cfg: ModelConfig, seed: int = 0) -> Basenji2:
    """A freshly initialised model in train mode; `seed` drives init and dropout."""
    return Basenji2(cfg, rngs=nnx.Rngs(params=seed, dropout=seed + 1))


def rng_state(cfg: ModelConfig, seed: int = 0) -> nnx.State:
    """The RNG streams of `build_model(cfg, seed)` (every variable but parameters and BatchNorm statistics),
    in one jitted program from which XLA drops the weights' initialisation: what a model rebuilt around
    given weights (`nnx.merge` of its graph, weights and this) needs besides them."""
    return jax.jit(lambda: nnx.split(build_model(cfg, seed), nnx.Param, nnx.BatchStat, ...)[3])()
