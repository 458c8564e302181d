"""The state_dict of `basenji2_pytorch.Basenji2` (PyPI basenji2-pytorch; its `basenji2.pth`).

  basenji2-pytorch key prefix                        JAX module path            kind
  model.trunk.0.block.{1,2}                          stem/{conv,bn}             conv, bn
  model.trunk.1.tower.{i}.block.{1,2}                tower/i/{conv,bn}          conv, bn
  model.trunk.2.block.{j}.module.0.block.{1,2}       dilated/j/{conv1,bn1}      conv, bn
  model.trunk.2.block.{j}.module.1.block.{1,2}       dilated/j/{conv2,bn2}      conv, bn
  model.trunk.4.block.{1,2}                          final/{conv,bn}            conv, bn
  model.head.final.block.1                           heads/<head>/linear        linear
(`block.0` of every conv block is its GELU; the convolutions have no bias.)
The package holds one head; its JAX name comes from `--head` or the track count.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from jax_basenji.config import ModelConfig
from jax_basenji.convert.table import (TORCH_KINDS, ConversionError, Path, from_jax, head_name, param_table,
                                       to_jax)

HEAD_KEY = "model.head.final.block.1"


def module_table(cfg: ModelConfig, head: str) -> list[tuple[str, Path, str]]:
    """(torch module prefix, JAX module path, kind) for every parameterised layer, in key order."""
    rows: list[tuple[str, Path, str]] = [("model.trunk.0.block.1", ("stem", "conv"), "conv"),
                                         ("model.trunk.0.block.2", ("stem", "bn"), "bn")]
    for i in range(cfg.tower_layers):
        rows += [(f"model.trunk.1.tower.{i}.block.1", ("tower", i, "conv"), "conv"),
                 (f"model.trunk.1.tower.{i}.block.2", ("tower", i, "bn"), "bn")]
    for j in range(cfg.dilated_layers):
        p = f"model.trunk.2.block.{j}.module"
        rows += [(f"{p}.0.block.1", ("dilated", j, "conv1"), "conv"),
                 (f"{p}.0.block.2", ("dilated", j, "bn1"), "bn"),
                 (f"{p}.1.block.1", ("dilated", j, "conv2"), "conv"),
                 (f"{p}.1.block.2", ("dilated", j, "bn2"), "bn")]
    rows += [("model.trunk.4.block.1", ("final", "conv"), "conv"),
             ("model.trunk.4.block.2", ("final", "bn"), "bn"),
             (HEAD_KEY, ("heads", head, "linear"), "linear")]
    return rows


def table(cfg: ModelConfig, head: str):
    return param_table(module_table(cfg, head), TORCH_KINDS, conv_bias=cfg.conv_bias)


def is_basenji2_pytorch(state_dict: Mapping) -> bool:
    return any(k.startswith("model.trunk.") for k in state_dict)


def arrays_from_state_dict(state_dict: Mapping[str, np.ndarray], base: ModelConfig, expected_shapes,
                           head: str | None = None) -> tuple[dict, ModelConfig]:
    """basenji2-pytorch state_dict -> (JAX arrays, `base` with the file's one head)."""
    weight = state_dict.get(HEAD_KEY + ".weight")
    if weight is None:
        raise ConversionError(f"state_dict has no {HEAD_KEY}.weight: not a basenji2-pytorch Basenji2")
    tracks = int(np.shape(weight)[0])
    cfg = base.replace(heads=((head_name(tracks, head, base), tracks),))
    arrays = to_jax(state_dict, table(cfg, cfg.heads[0][0]), expected_shapes(cfg),
                    "state_dict does not match basenji2-pytorch's Basenji2")
    return arrays, cfg


def state_dict_from_arrays(arrays: Mapping, cfg: ModelConfig, head: str | None = None) -> dict[str, np.ndarray]:
    """JAX arrays -> basenji2-pytorch state_dict (numpy), one head (`head`, or the only one)."""
    names = [n for n, _ in cfg.heads]
    if head is None and len(names) > 1:
        raise ConversionError(f"basenji2-pytorch holds one head and this checkpoint has {names}: pick one with --head")
    head = head or names[0]
    if head not in names:
        raise ConversionError(f"unknown head {head!r}; this checkpoint has {names}")
    return from_jax(arrays, table(cfg, head), skip=lambda p: p[0] == "heads" and p[1] != head)
