"""Model configuration: one frozen dataclass with named presets.

This module imports nothing but the standard library, so `torch_ref` builds
the PyTorch reference from the very same config without pulling in JAX.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

# The seed's two residual forms, and the published Kelley 2020 model (pre-activation blocks).
VARIANTS = ("basenji2-double-prime", "basenji2-prime", "basenji2")
SEED_VARIANTS = VARIANTS[:2]
GELU_FORMS = ("erf", "tanh", "sigmoid")
GEMM_CONVS = ("auto", "none", "stem", "dilated", "stem,dilated")


def _round_half_even(x: float) -> int:
    # Python's round() is round-half-even, as numpy.round used by the seed.
    return int(round(x))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of a Basenji2 network (docs/seed_reference.md, docs/published_basenji2.md)."""

    # Block form. Seed variants use Conv -> BN -> GELU blocks: "basenji2-double-prime" =
    # GELU after the residual add (the fixed model), "basenji2-prime" = GELU last inside
    # the branch. "basenji2" (the published Keras model) uses pre-activation blocks
    # GELU -> Conv -> BN [-> Dropout] [-> MaxPool] and a plain residual add.
    variant: str = "basenji2-double-prime"
    # GELU form: "erf" (torch.nn.GELU, the seed and basenji2-pytorch), "tanh" (upstream
    # basenji since 2022), "sigmoid" (x * sigmoid(1.702 x): what the published weights saw).
    gelu: str = "erf"
    # Convolutions carry a bias (the seed's do; Keras Basenji2's do not: BN follows).
    conv_bias: bool = True
    # Input length in bp; any multiple of the bin width with more bins than
    # 2 * crop_bins also works at prediction time.
    seq_length: int = 131_072
    # Output channels of the stem convolution.
    stem_channels: int = 288
    # Kernel width of the stem convolution.
    stem_kernel: int = 15
    # Number of conv/pool blocks in the tower (each halves the length).
    tower_layers: int = 6
    # Channel growth per tower block; rounded half-even after every step.
    tower_mult: float = 1.1776
    # Kernel width of the tower convolutions.
    tower_kernel: int = 5
    # First tower width for upstream's rule round(tower_init * tower_mult**i); None =
    # the seed's rule (from stem_channels, rounded and fed back at every step).
    tower_init: int | None = None
    # Channels leaving the tower (the last tower width is forced to this).
    trunk_channels: int = 768
    # Number of dilated residual blocks.
    dilated_layers: int = 11
    # Bottleneck channels inside each dilated residual branch.
    bottleneck_channels: int = 384
    # Growth of the dilation rate per residual block.
    dilation_mult: float = 1.5
    # "seed": round(mult**i) for i = 1..n (2, 2, 3, 5, ...); "upstream": d = 1, then
    # d = round(d * mult) fed back after each block (1, 2, 3, 4, 6, ...).
    dilation_rule: str = "seed"
    # Kernel width of the dilated convolutions.
    dilated_kernel: int = 3
    # Dropout at the end of each residual branch.
    residual_dropout: float = 0.3
    # Bins cropped from each side after the dilated stack.
    crop_bins: int = 64
    # Channels of the final pointwise convolution (input to the heads).
    final_channels: int = 1536
    # Dropout in the final block (applied before its GELU, as in the seed).
    final_dropout: float = 0.05
    # Output heads as (name, tracks) pairs; a tuple keeps the config hashable.
    heads: tuple[tuple[str, int], ...] = (("human", 5313), ("mouse", 1643))
    # BatchNorm momentum in *PyTorch* semantics: running = (1-m)*running + m*batch.
    bn_momentum: float = 0.9
    # BatchNorm epsilon (torch's default 1e-5; Keras' 1e-3).
    bn_eps: float = 1e-5
    # Running variance from the unbiased batch variance (torch) or the biased one (Keras).
    bn_unbiased_var: bool = True
    # Initialisation for training from scratch: "flax" (the library defaults) or "keras"
    # (truncated he_normal kernels, zero gamma in each residual branch's last BatchNorm).
    init: str = "flax"
    # Compute dtype of convolutions and matmuls: "float32", "bfloat16", or
    # "float64" (exactness tests only; needs jax x64, and then parameters and
    # statistics are float64 too). Otherwise parameters and BatchNorm statistics are float32.
    dtype: str = "float32"
    # Rematerialise every block in the backward pass (memory for long sequences).
    remat: bool = False
    # Compute layout, run options like remat (parameters and checkpoints keep true widths):
    # stem and tower channels rounded up to this multiple while computing, zero weights keeping
    # the padding exactly 0 (bf16 tensor cores need multiples of 8; else cuDNN pads every call).
    # 0 = 8 on a GPU, 1 (none) elsewhere.
    channel_multiple: int = 0
    # Convolutions computed as matmuls (the GPU runs the 4-channel stem and the dilated weight
    # gradients poorly as convolutions; jax_basenji.gemm_conv): "stem", "dilated", "stem,dilated"
    # or "none"; "auto" = both on a GPU, none elsewhere.
    gemm_convs: str = "auto"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected one of {VARIANTS}")
        for field, allowed in (("gelu", GELU_FORMS), ("dilation_rule", ("seed", "upstream")),
                               ("init", ("flax", "keras"))):
            if getattr(self, field) not in allowed:
                raise ValueError(f"unknown {field} {getattr(self, field)!r}; expected one of {allowed}")
        if self.dtype not in ("float32", "bfloat16", "float64"):
            raise ValueError(f"unknown dtype {self.dtype!r}; expected float32, bfloat16 or float64")
        if self.channel_multiple < 0:
            raise ValueError(f"channel_multiple must be >= 0 (0 = auto), not {self.channel_multiple}")
        if self.gemm_convs not in GEMM_CONVS:
            raise ValueError(f"unknown gemm_convs {self.gemm_convs!r}; expected one of {GEMM_CONVS}")
        for field in ("stem_kernel", "tower_kernel", "dilated_kernel"):
            if getattr(self, field) % 2 == 0:  # "same" padding is symmetric only for odd kernels
                raise ValueError(f"{field} must be odd, not {getattr(self, field)}")
        if isinstance(self.heads, Mapping):  # accept a dict, store a tuple
            object.__setattr__(self, "heads", tuple(self.heads.items()))
        object.__setattr__(self, "heads", tuple((str(n), int(t)) for n, t in self.heads))
        if not self.heads:
            raise ValueError("a model needs at least one head")
        if self.tower_init is not None and self.tower_layers and self.tower_channels[-1] != self.trunk_channels:
            raise ValueError(f"tower widths {self.tower_channels} must end at trunk_channels={self.trunk_channels}")
        self.output_bins(self.seq_length)  # validates the length

    # ----- presets -----------------------------------------------------------------
    @classmethod
    def basenji2_double_prime(cls, **overrides) -> "ModelConfig":
        """Basenji2'': the seed's fixed residual block (GELU after the add)."""
        return cls(**{"variant": "basenji2-double-prime", **overrides})

    @classmethod
    def basenji2_prime(cls, **overrides) -> "ModelConfig":
        """Basenji2': the seed's original residual block (GELU inside the branch)."""
        return cls(**{"variant": "basenji2-prime", **overrides})

    @classmethod
    def basenji2(cls, **overrides) -> "ModelConfig":
        """The published Basenji2 (Kelley 2020, Keras): one head per file (human 5313, mouse 1643)."""
        return cls(**{**PUBLISHED, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> "ModelConfig":
        """A few-thousand-times smaller network for tests and demos.

        Keeps the seven pooling steps (128 bp bins) so it reads the same data.
        """
        base = dict(
            seq_length=16_384, stem_channels=16, tower_mult=1.15, trunk_channels=32,
            dilated_layers=4, bottleneck_channels=16, crop_bins=8, final_channels=48,
            heads=(("human", 8), ("mouse", 4)),
        )
        return cls(**{**base, **overrides})

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        presets = {
            "basenji2-double-prime": cls.basenji2_double_prime,
            "basenji2-prime": cls.basenji2_prime,
            "basenji2": cls.basenji2,
            "tiny": cls.tiny,
            "tiny-basenji2": lambda **o: cls.tiny(**{**PUBLISHED, **TINY_PUBLISHED, **o}),
        }
        if name not in presets:
            raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(presets)}")
        return presets[name](**overrides)

    # ----- derived quantities ----------------------------------------------------------
    @property
    def head_tracks(self) -> dict[str, int]:
        return dict(self.heads)

    @property
    def pre_activation(self) -> bool:
        """Blocks of the published form: GELU -> Conv -> BN, residual x + branch(x)."""
        return self.variant == "basenji2"

    @property
    def tower_channels(self) -> list[int]:
        """Tower widths: seed 339, 399, 470, 553, 651, 768; published 339, 399, 470, 554, 652, 768."""
        if self.tower_init is not None:
            return [_round_half_even(self.tower_init * self.tower_mult ** i) for i in range(self.tower_layers)]
        widths, width = [], self.stem_channels
        for _ in range(self.tower_layers):
            width = _round_half_even(width * self.tower_mult)
            widths.append(width)
        if widths:
            widths[-1] = self.trunk_channels
        return widths

    @property
    def dilations(self) -> list[int]:
        """Seed: 2, 2, 3, 5, 8, 11, 17, 26, 38, 58, 86; upstream: 1, 2, 3, 4, 6, 9, 14, 21, 32, 48, 72."""
        rates, rate = [], 1.0
        for _ in range(self.dilated_layers):
            if self.dilation_rule == "upstream":
                rates.append(_round_half_even(rate))
                rate = float(_round_half_even(rate * self.dilation_mult))
            else:
                rate *= self.dilation_mult
                rates.append(_round_half_even(rate))
        return rates

    @property
    def bin_size(self) -> int:
        """bp per output bin: one max-pool of 2 in the stem and in each tower block."""
        return 2 ** (1 + self.tower_layers)

    @property
    def tower_reach(self) -> int:
        """bp the conv tower's output bin reads beyond its own bin on each side (259 for Basenji2).

        Walking back from one output bin: a max-pool of 2 doubles the span, a "same" conv of
        kernel k at a level of 2**i bp per position widens each side by (k - 1) // 2 * 2**i bp."""
        reach, level = (self.stem_kernel - 1) // 2, 1  # the stem conv reads the bp themselves
        for _ in range(self.tower_layers):
            level *= 2  # the pooling before this block
            reach += (self.tower_kernel - 1) // 2 * level
        return reach

    def output_bins(self, seq_length: int) -> int:
        """Number of output bins for an input of `seq_length` bp (896 for 131,072)."""
        if seq_length <= 0 or seq_length % self.bin_size:
            raise ValueError(
                f"sequence length {seq_length} is not a positive multiple of the "
                f"{self.bin_size} bp bin width")
        bins = seq_length // self.bin_size - 2 * self.crop_bins
        if bins <= 0:
            raise ValueError(
                f"sequence length {seq_length} leaves no bins after cropping "
                f"{self.crop_bins} bins per side; need more than "
                f"{2 * self.crop_bins * self.bin_size} bp")
        return bins

    @property
    def target_length(self) -> int:
        return self.output_bins(self.seq_length)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def architecture(self) -> "ModelConfig":
        """This config without its run options (compute dtype, remat, layout): what a checkpoint records.

        The compute precision and rematerialisation are chosen per command
        (`--precision`, `--remat`), so a model trained in bf16 predicts in fp32
        unless asked, and a resume may change them; the layout follows the machine.
        """
        return self.replace(dtype="float32", remat=False, channel_multiple=0, gemm_convs="auto")

    # ----- serialization (stored beside every checkpoint) -----------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["heads"] = {name: tracks for name, tracks in self.heads}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        """A config from its dict; fields left out take the defaults of its variant's form
        (a partial `basenji2` JSON gets the published GELU, BatchNorm and rules, not the seed's)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config fields: {unknown}")
        defaults = PUBLISHED if d.get("variant") == "basenji2" else {}
        return cls(**{**defaults, **d})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


# The published model's form (calico/basenji manuscripts/cross2020/params_human.json):
# Keras BatchNorm (momentum 0.9 in Keras terms = 0.1 in torch's, epsilon 1e-3, biased
# running variance), bias-free convolutions, upstream's width and dilation rules.
PUBLISHED = dict(
    variant="basenji2", gelu="sigmoid", conv_bias=False, tower_init=339, dilation_rule="upstream",
    bn_momentum=0.1, bn_eps=1e-3, bn_unbiased_var=False, init="keras", heads=(("human", 5313),),
)
# The tiny preset's widths with the published form ("tiny-basenji2").
TINY_PUBLISHED = dict(tower_init=18, tower_mult=1.1776, trunk_channels=41, heads=(("human", 8),))
