"""The seed code's PyTorch state_dict (Basenji2' / Basenji2''), and its fine-tuning wrapper.

  seed key prefix                                   JAX module path          kind
  conv_stem.conv_stem.0.{0,1}                        stem/{conv,bn}           conv, bn
  conv_layers.conv_layers.{i}.{0,1}                  tower/i/{conv,bn}        conv, bn
  dilated_layers.dilated_layers.{i}.{0,1,3,4}        dilated/i/{conv1,bn1,conv2,bn2}
  final_layers.conv.0.{0,1}                          final/{conv,bn}          conv, bn
  output_heads.heads.{name}.0                        heads/name/linear        linear
Fine-tuned checkpoints prefix every key with `model.pretrained_model.` and add
`new_head.head.0` (a JAX head named by the user, `finetune` by default).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from jax_basenji.config import ModelConfig
from jax_basenji.convert.table import TORCH_KINDS, ConversionError, Path, param_table, to_jax, from_jax

FINETUNE_PREFIX = "model.pretrained_model."
NEW_HEAD_PREFIX = "new_head.head.0"


def module_table(cfg: ModelConfig, new_head: str | None = None) -> list[tuple[str, Path, str]]:
    """(torch module prefix, JAX module path, kind) for every parameterised layer, in key order."""
    rows: list[tuple[str, Path, str]] = [
        ("conv_stem.conv_stem.0.0", ("stem", "conv"), "conv"),
        ("conv_stem.conv_stem.0.1", ("stem", "bn"), "bn"),
    ]
    for i in range(cfg.tower_layers):
        rows += [(f"conv_layers.conv_layers.{i}.0", ("tower", i, "conv"), "conv"),
                 (f"conv_layers.conv_layers.{i}.1", ("tower", i, "bn"), "bn")]
    for i in range(cfg.dilated_layers):
        p = f"dilated_layers.dilated_layers.{i}"
        rows += [(f"{p}.0", ("dilated", i, "conv1"), "conv"),
                 (f"{p}.1", ("dilated", i, "bn1"), "bn"),
                 (f"{p}.3", ("dilated", i, "conv2"), "conv"),
                 (f"{p}.4", ("dilated", i, "bn2"), "bn")]
    rows += [("final_layers.conv.0.0", ("final", "conv"), "conv"),
             ("final_layers.conv.0.1", ("final", "bn"), "bn")]
    for name, _ in cfg.heads:
        if name != new_head:
            rows.append((f"output_heads.heads.{name}.0", ("heads", name, "linear"), "linear"))
    if new_head is not None:
        rows = [(FINETUNE_PREFIX + t, j, k) for t, j, k in rows]
        rows.append((NEW_HEAD_PREFIX, ("heads", new_head, "linear"), "linear"))
    return rows


def table(cfg: ModelConfig, new_head: str | None = None):
    """One `ParamMapping` per seed state_dict key, in the seed's order."""
    return param_table(module_table(cfg, new_head), TORCH_KINDS, conv_bias=cfg.conv_bias)


def is_finetuned(state_dict: Mapping[str, Any]) -> bool:
    """True for the seed's fine-tuning wrapper (keys `model.pretrained_model.*`)."""
    return any(k.startswith(FINETUNE_PREFIX) for k in state_dict)


def infer_heads(state_dict: Mapping[str, Any], new_head: str | None) -> tuple[tuple[str, int], ...]:
    """Heads (name, tracks) read off a seed state_dict's head weights, in key order."""
    prefix = (FINETUNE_PREFIX if new_head else "") + "output_heads.heads."
    heads = []
    for key, value in state_dict.items():
        if key.startswith(prefix) and key.endswith(".0.weight"):
            heads.append((key[len(prefix):-len(".0.weight")], int(np.shape(value)[0])))
    if new_head is not None:
        w = state_dict.get(NEW_HEAD_PREFIX + ".weight")
        if w is None:
            raise ConversionError(f"fine-tuned state_dict lacks {NEW_HEAD_PREFIX}.weight")
        if new_head in dict(heads):
            raise ConversionError(f"head name {new_head!r} is already a pretrained head; pick another")
        heads.append((new_head, int(np.shape(w)[0])))
    if not heads:
        raise ConversionError("state_dict has no output head (no output_heads.heads.<name>.0.weight key)")
    return tuple(heads)


def arrays_from_state_dict(state_dict: Mapping[str, np.ndarray], base: ModelConfig, expected_shapes,
                           head_name: str = "finetune") -> tuple[dict, ModelConfig, str | None]:
    """Seed state_dict -> (JAX arrays, config with the state_dict's heads, new-head name or None).

    `base` fixes the variant and widths (the weights cannot reveal the variant);
    `expected_shapes(cfg)` gives the JAX leaf shapes of a config.
    """
    new_head = head_name if is_finetuned(state_dict) else None
    cfg = base.replace(heads=infer_heads(state_dict, new_head))
    arrays = to_jax(state_dict, table(cfg, new_head), expected_shapes(cfg),
                    f"state_dict does not match {cfg.variant}")
    return arrays, cfg, new_head


def state_dict_from_arrays(arrays: Mapping, cfg: ModelConfig, new_head: str | None = None) -> dict[str, np.ndarray]:
    """JAX arrays -> seed state_dict (numpy), in the seed's key order."""
    return from_jax(arrays, table(cfg, new_head))
