"""The torch <-> JAX parameter name table and one transform per parameter kind.

Every seed state_dict key is listed explicitly against the path of the
matching NNX variable (nothing is zipped by position), in the seed's key
order. Arrays are numpy here; torch only appears in `jax_basenji.convert`.

  kind    torch key suffix        JAX leaf  transform (torch -> JAX)
  conv    weight (out, in, k)     kernel    transpose -> (k, in, out)
          bias                    bias      identity
  linear  weight (out, in)        kernel    transpose -> (in, out)
          bias                    bias      identity
  bn      weight / bias           scale / bias
          running_mean / _var     mean / var
          num_batches_tracked     count     int64 -> int32 (JAX default ints)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from jax_basenji.config import ModelConfig

Path = tuple[Any, ...]
FINETUNE_PREFIX = "model.pretrained_model."
NEW_HEAD_PREFIX = "new_head.head.0"


class ConversionError(ValueError):
    """A state_dict or checkpoint does not match the model it is converted for."""


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _conv_to_jax(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 1, 0))


def _transpose(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)


def _count_to_jax(c: np.ndarray) -> np.ndarray:
    if int(c) >= 2**31:
        raise ConversionError(f"num_batches_tracked={int(c)} does not fit int32")
    return np.asarray(c, np.int32)


def _count_to_torch(c: np.ndarray) -> np.ndarray:
    return np.asarray(c, np.int64)


# kind -> [(torch suffix, JAX leaf name, to_jax, to_torch)], in torch key order.
KINDS: dict[str, list[tuple[str, str, Callable, Callable]]] = {
    "conv": [("weight", "kernel", _conv_to_jax, _conv_to_jax),  # (2,1,0) is its own inverse
             ("bias", "bias", _identity, _identity)],
    "linear": [("weight", "kernel", _transpose, _transpose),
               ("bias", "bias", _identity, _identity)],
    "bn": [("weight", "scale", _identity, _identity),
           ("bias", "bias", _identity, _identity),
           ("running_mean", "mean", _identity, _identity),
           ("running_var", "var", _identity, _identity),
           ("num_batches_tracked", "count", _count_to_jax, _count_to_torch)],
}


@dataclasses.dataclass(frozen=True)
class ParamMapping:
    torch_key: str
    jax_path: Path
    to_jax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


def module_table(cfg: ModelConfig, new_head: str | None = None) -> list[tuple[str, Path, str]]:
    """(torch module prefix, JAX module path, kind) for every parameterised layer.

    With `new_head`, the table is that of the seed's fine-tuning wrapper: every
    pretrained key gains `model.pretrained_model.` and `new_head.head.0` maps to
    the JAX head named `new_head`.
    """
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


def param_table(cfg: ModelConfig, new_head: str | None = None) -> list[ParamMapping]:
    """One `ParamMapping` per state_dict key, in the seed's state_dict order."""
    return [ParamMapping(f"{prefix}.{suffix}", (*path, leaf), to_jax, to_torch)
            for prefix, path, kind in module_table(cfg, new_head)
            for suffix, leaf, to_jax, to_torch in KINDS[kind]]


def _get(tree: Mapping, path: Path) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _set(tree: dict, path: Path, value: Any) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def flatten(tree: Mapping, prefix: Path = ()) -> dict[Path, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def _fmt(keys, limit: int = 8) -> str:
    keys = sorted(map(str, keys))
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def torch_to_jax(state_dict: Mapping[str, np.ndarray], cfg: ModelConfig,
                 expected_shapes: Mapping[Path, tuple[int, ...]],
                 new_head: str | None = None) -> dict:
    """Seed state_dict (numpy arrays, no `module.` prefix) -> nested JAX pure dict.

    `expected_shapes` maps every JAX leaf path of the target model to its shape;
    any missing, unexpected or mis-shaped key raises `ConversionError` naming it.
    """
    table = param_table(cfg, new_head)
    expected = {m.torch_key for m in table}
    missing, unexpected = expected - set(state_dict), set(state_dict) - expected
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_fmt(unexpected)}")
        raise ConversionError(f"state_dict does not match {cfg.variant}: " + "; ".join(parts))
    out: dict = {}
    bad = []
    for m in table:
        # np.array copies: arrays from live torch tensors share their memory,
        # and JAX on CPU may alias numpy buffers without copying.
        value = m.to_jax(np.array(state_dict[m.torch_key]))
        want = tuple(expected_shapes[m.jax_path])
        if value.shape != want:
            torch_want = m.to_torch(np.broadcast_to(np.zeros((), value.dtype), want)).shape
            bad.append(f"{m.torch_key} has shape {tuple(np.shape(state_dict[m.torch_key]))}, "
                       f"expected {tuple(torch_want)}")
            continue
        _set(out, m.jax_path, value)
    if bad:
        raise ConversionError(f"state_dict does not match {cfg.variant}: " + "; ".join(bad))
    return out


def jax_to_torch(params: Mapping, cfg: ModelConfig, new_head: str | None = None) -> dict[str, np.ndarray]:
    """Nested JAX pure dict -> seed state_dict (numpy arrays), in seed key order."""
    table = param_table(cfg, new_head)
    flat = flatten(params)
    missing = {m.jax_path for m in table} - set(flat)
    unexpected = set(flat) - {m.jax_path for m in table}
    if missing or unexpected:
        raise ConversionError(
            "JAX parameters do not match the model config: "
            f"missing {_fmt('/'.join(map(str, p)) for p in missing) or 'none'}; "
            f"unexpected {_fmt('/'.join(map(str, p)) for p in unexpected) or 'none'}")
    return {m.torch_key: m.to_torch(np.asarray(flat[m.jax_path])) for m in table}


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


def is_finetuned(state_dict: Mapping[str, Any]) -> bool:
    """True for the seed's fine-tuning wrapper (keys `model.pretrained_model.*`)."""
    return any(k.startswith(FINETUNE_PREFIX) for k in state_dict)
