"""The published Basenji2 (Kelley 2020) in PyTorch, state_dict-compatible with basenji2-pytorch.

Module attributes and `nn.Sequential` indices reproduce the keys of
`basenji2_pytorch.Basenji2` (`model.trunk.0.block.1.weight` ...
`model.head.final.block.1.bias`), so its `basenji2.pth` loads with
`strict=True`. Unlike that package, the GELU form is a config field
(`ModelConfig.gelu`): "sigmoid" reproduces the Keras model the weights were
trained as, "erf" reproduces basenji2-pytorch's own outputs. Input and output
follow torch_ref's convention: `(B, L, 4)` -> `(B, bins, tracks)`. Its BatchNorm is
torch's, as the package's: in train mode the running variance takes the unbiased
batch variance whatever `bn_unbiased_var` says (Keras keeps the biased one; the
JAX model follows the config).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from jax_basenji.config import ModelConfig


class GELU(nn.Module):
    """GELU in the form `form`: "erf" (torch's default), "tanh" or "sigmoid" (x * sigmoid(1.702 x))."""

    def __init__(self, form: str):
        super().__init__()
        self.form = form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "sigmoid":
            return torch.sigmoid(1.702 * x) * x
        return F.gelu(x, approximate="tanh" if self.form == "tanh" else "none")


class ConvBlock(nn.Module):
    """GELU -> Conv1d (no bias, "same") -> BN [-> Dropout] [-> MaxPool(2)]; keys `block.1`, `block.2`."""

    def __init__(self, cin: int, cout: int, kernel: int, cfg: ModelConfig, *, dilation: int = 1,
                 dropout: float = 0.0, pool: bool = False):
        super().__init__()
        layers = [GELU(cfg.gelu),
                  nn.Conv1d(cin, cout, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation,
                            bias=cfg.conv_bias),
                  nn.BatchNorm1d(cout, eps=cfg.bn_eps, momentum=cfg.bn_momentum)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        if pool:
            layers.append(nn.MaxPool1d(2))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ConvTower(nn.Module):
    """The six pooling blocks; keys `tower.{i}.block.*`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        widths = [cfg.stem_channels, *cfg.tower_channels]
        self.tower = nn.Sequential(*[ConvBlock(widths[i], widths[i + 1], cfg.tower_kernel, cfg, pool=True)
                                     for i in range(cfg.tower_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower(x)


class Residual(nn.Module):
    """x + module(x); keys `module.{0,1}.block.*`."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.module(x)


class DilatedResidual(nn.Module):
    """The dilated residual blocks; keys `block.{j}.module.{0,1}.block.*`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, b = cfg.trunk_channels, cfg.bottleneck_channels
        self.block = nn.Sequential(*[
            Residual(nn.Sequential(ConvBlock(c, b, cfg.dilated_kernel, cfg, dilation=d),
                                   ConvBlock(b, c, 1, cfg, dropout=cfg.residual_dropout)))
            for d in cfg.dilations])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Crop(nn.Module):
    def __init__(self, bins: int):
        super().__init__()
        self.bins = bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., self.bins:x.shape[-1] - self.bins]


class ChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class Head(nn.Module):
    """(B, C, bins) -> Linear -> Softplus -> (B, bins, tracks); keys `block.1.*`."""

    def __init__(self, channels: int, tracks: int):
        super().__init__()
        self.block = nn.Sequential(ChannelsLast(), nn.Linear(channels, tracks), nn.Softplus())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class PublishedBasenji2(nn.Module):
    """The published Basenji2, one head: `(B, L, 4)` -> `(B, bins, tracks)`."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg or ModelConfig.basenji2()
        if not self.cfg.pre_activation or len(self.cfg.heads) != 1:
            raise ValueError("PublishedBasenji2 needs a 'basenji2' config with exactly one head")
        c = self.cfg
        trunk = nn.Sequential(
            ConvBlock(4, c.stem_channels, c.stem_kernel, c, pool=True),
            ConvTower(c),
            DilatedResidual(c),
            Crop(c.crop_bins),
            ConvBlock(c.trunk_channels, c.final_channels, 1, c, dropout=c.final_dropout),
            GELU(c.gelu))
        head = nn.Sequential(OrderedDict(final=Head(c.final_channels, c.heads[0][1])))
        self.model = nn.Sequential(OrderedDict(trunk=trunk, head=head))

    def forward(self, sequence: torch.Tensor, head: str | None = None) -> torch.Tensor:
        name = self.cfg.heads[0][0]
        if head not in (None, name):
            raise KeyError(f"unknown head {head!r}; this model has ['{name}']")
        x = sequence.to(self.model.trunk[0].block[1].weight.dtype).transpose(1, 2)
        return self.model(x)
