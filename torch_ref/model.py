"""The seed's PyTorch Basenji2 (docs/seed_reference.md), rebuilt key for key.

Module attribute names and `nn.Sequential` indices reproduce the seed's
state_dict exactly (`parity_tests/fixtures/seed_state_dict_keys.tsv`), so a seed
`.pt` loads with `load_state_dict(strict=True)`. Layers without parameters
(GELU, pooling, dropout) keep their seed positions so the numbered indices
of the parameterised layers stay the same.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn

from jax_basenji.config import ModelConfig


def _conv(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Conv1d:
    # Symmetric "same" padding: kernel 15 pads 7/7, kernel 3 dilation d pads d/d.
    return nn.Conv1d(cin, cout, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)


def _bn(channels: int, cfg: ModelConfig) -> nn.BatchNorm1d:
    # The seed passes its momentum straight to torch (PyTorch semantics).
    return nn.BatchNorm1d(channels, eps=cfg.bn_eps, momentum=cfg.bn_momentum)


def _conv_pool_block(cin: int, cout: int, kernel: int, cfg: ModelConfig) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, kernel), _bn(cout, cfg), nn.GELU(), nn.MaxPool1d(2))


class ConvStem(nn.Module):
    """Conv(k=15) -> BN -> GELU -> MaxPool(2); keys `conv_stem.conv_stem.0.{0,1}`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.conv_stem = nn.Sequential(_conv_pool_block(4, cfg.stem_channels, cfg.stem_kernel, cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_stem(x)


class ConvTower(nn.Module):
    """Six Conv(k=5) -> BN -> GELU -> MaxPool(2) blocks; keys `conv_layers.conv_layers.{i}`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        widths = [cfg.stem_channels, *cfg.tower_channels]
        self.conv_layers = nn.Sequential(*[
            _conv_pool_block(widths[i], widths[i + 1], cfg.tower_kernel, cfg)
            for i in range(cfg.tower_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_layers(x)


class DilatedResidualStack(nn.Module):
    """Eleven dilated residual blocks; keys `dilated_layers.dilated_layers.{i}.{0,1,3,4}`.

    Branch: Conv(k=3, d) -> BN -> GELU -> Conv(k=1) -> BN -> Dropout [-> GELU for
    Basenji2']. Basenji2' adds GELU(branch) to x; Basenji2'' applies GELU to the sum.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gelu_after_add = cfg.variant == "basenji2-double-prime"
        c, b = cfg.trunk_channels, cfg.bottleneck_channels
        blocks = []
        for d in cfg.dilations:
            layers = [_conv(c, b, cfg.dilated_kernel, d), _bn(b, cfg), nn.GELU(),
                      _conv(b, c, 1), _bn(c, cfg), nn.Dropout(cfg.residual_dropout)]
            if not self.gelu_after_add:
                layers.append(nn.GELU())
            blocks.append(nn.Sequential(*layers))
        self.dilated_layers = nn.Sequential(*blocks)
        self.gelu = nn.GELU()

    def forward_block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Residual block `i` alone, `(B, C, bins)` -> same shape."""
        x = x + self.dilated_layers[i](x)
        return self.gelu(x) if self.gelu_after_add else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.dilated_layers)):
            x = self.forward_block(i, x)
        return x


class FinalLayers(nn.Module):
    """Conv(k=1) -> BN -> Dropout -> GELU (dropout before GELU); keys `final_layers.conv.0`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.conv = nn.Sequential(nn.Sequential(
            _conv(cfg.trunk_channels, cfg.final_channels, 1), _bn(cfg.final_channels, cfg),
            nn.Dropout(cfg.final_dropout), nn.GELU()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class OutputHeads(nn.Module):
    """Per-species Linear -> Softplus on `(B, bins, C)`; keys `output_heads.heads.<name>.0`."""

    def __init__(self, channels: int, heads: Mapping[str, int]):
        super().__init__()
        self.heads = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(channels, tracks), nn.Softplus())
            for name, tracks in heads.items()})

    def forward(self, x: torch.Tensor, head: str) -> torch.Tensor:
        if head not in self.heads:
            raise KeyError(f"unknown head {head!r}; this model has {sorted(self.heads)}")
        return self.heads[head](x)


class Basenji2(nn.Module):
    """Basenji2' or Basenji2'' as in the seed: `(B, L, 4)` -> `(B, bins, tracks)`."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg or ModelConfig()
        self.conv_stem = ConvStem(self.cfg)
        self.conv_layers = ConvTower(self.cfg)
        self.dilated_layers = DilatedResidualStack(self.cfg)
        self.final_layers = FinalLayers(self.cfg)
        self.output_heads = OutputHeads(self.cfg.final_channels, self.cfg.head_tracks)

    def embed(self, sequence: torch.Tensor) -> torch.Tensor:
        """Trunk and final layers: `(B, L, 4)` -> `(B, bins, final_channels)`."""
        # One-hot in any dtype -> the parameters' dtype; the seed works channels-first.
        x = sequence.to(self.conv_stem.conv_stem[0][0].weight.dtype).transpose(1, 2)
        x = self.dilated_layers(self.conv_layers(self.conv_stem(x)))
        crop = self.cfg.crop_bins
        x = x[:, :, crop:x.shape[-1] - crop]
        return self.final_layers(x).transpose(1, 2)

    def forward(self, sequence: torch.Tensor, head: str = "human") -> torch.Tensor:
        return self.output_heads(self.embed(sequence), head)


class _PretrainedTrunk(nn.Module):
    """Holds the pretrained model so its keys read `model.pretrained_model.*`."""

    def __init__(self, pretrained_model: Basenji2):
        super().__init__()
        self.pretrained_model = pretrained_model

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return self.pretrained_model.embed(sequence)


class _NewHead(nn.Module):
    """Linear -> Softplus; keys `new_head.head.0.*`."""

    def __init__(self, channels: int, tracks: int):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(channels, tracks), nn.Softplus())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class FineTunedBasenji2(nn.Module):
    """The seed's fine-tuning wrapper: trunk -> final layers -> new head.

    The pretrained model's own heads stay in the state_dict (frozen).
    """

    def __init__(self, pretrained_model: Basenji2, tracks: int):
        super().__init__()
        self.model = _PretrainedTrunk(pretrained_model)
        self.new_head = _NewHead(pretrained_model.cfg.final_channels, tracks)
        for p in pretrained_model.output_heads.parameters():
            p.requires_grad_(False)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return self.new_head(self.model(sequence))


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Drop the `module.` prefix that `nn.DataParallel` checkpoints carry on every key."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return OrderedDict((k[len("module."):], v) for k, v in state_dict.items())
    return OrderedDict(state_dict)


def load_seed_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Strictly load a seed state_dict (with or without `module.`) into `model`."""
    model.load_state_dict(strip_module_prefix(state_dict), strict=True)
    return model
