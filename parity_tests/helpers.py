"""Shared tools of the parity tests: realistic torch models, inputs, comparisons."""

from __future__ import annotations

import copy
from typing import Mapping

import basenji2_pytorch  # the PyPI package: the published model's PyTorch port
import numpy as np
import torch
from flax.traverse_util import flatten_dict

from jax_basenji.config import ModelConfig
from jax_basenji.convert import basenji2_pytorch as published_layout
from jax_basenji.convert import seed_torch
from torch_ref import build_torch_model


def torch_table(cfg: ModelConfig, new_head: str | None = None):
    """The conversion table of `cfg`'s torch layout."""
    if cfg.variant == "basenji2":
        return published_layout.table(cfg, cfg.heads[0][0])
    return seed_torch.table(cfg, new_head)


def one_hot(batch: int, length: int, seed: int = 0, n_fraction: float = 0.0) -> np.ndarray:
    """`[batch, length, 4]` float32 one-hot random DNA; `n_fraction` of rows all-zero (N)."""
    rng = np.random.default_rng(seed)
    x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(batch, length))]
    if n_fraction:
        x[rng.random((batch, length)) < n_fraction] = 0
    return x


def randomize_affine(module: torch.nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial weight/bias (defaults 1/0 hide mapping bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


def calibrate(model: torch.nn.Module, seed: int, length: int, channels_first: bool = False) -> torch.nn.Module:
    """`model` with non-default BN affine and BN statistics from real forward passes, in eval mode.

    Default running statistics (mean 0, var 1) leave activations far off scale;
    two train-mode passes on random DNA set them the way training would, so that
    eval-mode outputs vary across bins and tracks and parity is meaningful.
    `channels_first`: the model reads `[B, 4, L]` (basenji2-pytorch).
    """
    randomize_affine(model, seed)
    model.train()
    with torch.no_grad():
        for i in range(2):
            x = torch.from_numpy(one_hot(2, length, seed=100 + i))
            model(x.transpose(1, 2) if channels_first else x)
    return model.eval()


def calibrated_torch_model(cfg: ModelConfig, seed: int = 0, calib_length: int | None = None) -> torch.nn.Module:
    """A calibrated torch_ref model (`calibrate`) of `cfg`'s variant."""
    torch.manual_seed(seed)
    return calibrate(build_torch_model(cfg), seed, calib_length or cfg.seq_length)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: the project's relative error for whole outputs."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def jax_params_as_torch(tree: Mapping, cfg: ModelConfig, leaves=("kernel", "bias", "scale"),
                        new_head: str | None = None) -> dict[str, np.ndarray]:
    """JAX tree (params, grads or stats) -> {torch key: array in torch layout}.

    Only leaves whose JAX name is in `leaves` are mapped (e.g. gradients exist
    for parameters only).
    """
    flat = flatten_dict(tree)
    return {m.foreign_key: m.to_foreign(np.asarray(flat[m.jax_path])) for m in torch_table(cfg, new_head)
            if m.jax_path[-1] in leaves and m.jax_path in flat}



def package_model(cfg: ModelConfig | None = None) -> torch.nn.Module:
    """`basenji2_pytorch.Basenji2` at the published widths, or at `cfg`'s (tiny tests)."""
    params = copy.deepcopy(basenji2_pytorch.basenji2_params["model"])
    if cfg is not None:
        params["seq_length"] = cfg.seq_length
        trunk = params["trunk"]
        trunk[0]["filters"] = cfg.stem_channels
        trunk[1].update(filters_init=cfg.tower_init, filters_mult=cfg.tower_mult)
        trunk[2].update(filters=cfg.bottleneck_channels, repeat=cfg.dilated_layers)
        trunk[3]["cropping"] = cfg.crop_bins
        trunk[4]["filters"] = cfg.final_channels
        params["head_human"]["units"] = cfg.heads[0][1]
    return basenji2_pytorch.Basenji2(params)


def calibrated_package_model(cfg: ModelConfig | None = None, seed: int = 0, length: int = 32_768):
    """A calibrated (`calibrate`) `basenji2_pytorch.Basenji2`."""
    torch.manual_seed(seed)
    return calibrate(package_model(cfg), seed, length, channels_first=True)


def package_predict(model, x: np.ndarray) -> np.ndarray:
    """`[B, L, 4]` -> `[B, bins, tracks]` with the package's own forward (channels-first input)."""
    with torch.no_grad():
        return model(torch.from_numpy(x).transpose(1, 2).contiguous()).numpy()
