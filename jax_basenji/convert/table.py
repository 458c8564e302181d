"""The machinery shared by every foreign layout: explicit name tables plus one transform per parameter kind.

A layout module (`seed_torch`, `basenji2_pytorch`, `keras_h5`) lists its layers
as rows (foreign layer name, JAX module path, kind); `param_table` expands them
with the kind's parameters into one `ParamMapping` per foreign array. Nothing
is matched by position or by guessing: an unmatched or mis-shaped name raises
`ConversionError` naming it. Arrays are numpy here; torch and h5py stay in the
layout modules.

  torch kinds  foreign (out, in, k) conv weight -> kernel (k, in, out); Linear weight
               (out, in) -> kernel (in, out); BatchNorm weight/bias/running_mean/
               running_var/num_batches_tracked -> scale/bias/mean/var/count (int32)
  keras kinds  Conv1D kernel is already (k, in, out), Dense kernel (in, out);
               BatchNormalization gamma/beta/moving_mean/moving_variance
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from jax_basenji.config import ModelConfig
from jax_basenji.errors import UserError

Path = tuple[Any, ...]
Transform = Callable[[np.ndarray], np.ndarray]


class ConversionError(UserError):
    """A foreign state_dict/file or a checkpoint does not match the model it is converted for."""


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _conv_transpose(w: np.ndarray) -> np.ndarray:  # (out, in, k) <-> (k, in, out): its own inverse
    return np.ascontiguousarray(w.transpose(2, 1, 0))


def _transpose(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)


def _count_to_jax(c: np.ndarray) -> np.ndarray:
    if int(c) >= 2**31:
        raise ConversionError(f"num_batches_tracked={int(c)} does not fit int32")
    return np.asarray(c, np.int32)


def _count_to_torch(c: np.ndarray) -> np.ndarray:
    return np.asarray(c, np.int64)


# A kind: [(foreign parameter name, JAX leaf name, to_jax, to_foreign)], in foreign order.
Kinds = dict[str, list[tuple[str, str, Transform, Transform]]]

TORCH_KINDS: Kinds = {
    "conv": [("weight", "kernel", _conv_transpose, _conv_transpose),
             ("bias", "bias", _identity, _identity)],
    "linear": [("weight", "kernel", _transpose, _transpose),
               ("bias", "bias", _identity, _identity)],
    "bn": [("weight", "scale", _identity, _identity),
           ("bias", "bias", _identity, _identity),
           ("running_mean", "mean", _identity, _identity),
           ("running_var", "var", _identity, _identity),
           ("num_batches_tracked", "count", _count_to_jax, _count_to_torch)],
}

KERAS_KINDS: Kinds = {
    "conv": [("kernel", "kernel", _identity, _identity),
             ("bias", "bias", _identity, _identity)],
    "linear": [("kernel", "kernel", _identity, _identity),
               ("bias", "bias", _identity, _identity)],
    "bn": [("gamma", "scale", _identity, _identity),
           ("beta", "bias", _identity, _identity),
           ("moving_mean", "mean", _identity, _identity),
           ("moving_variance", "var", _identity, _identity)],
}


@dataclasses.dataclass(frozen=True)
class ParamMapping:
    foreign_key: str
    jax_path: Path
    to_jax: Transform
    to_foreign: Transform


def param_table(rows: list[tuple[str, Path, str]], kinds: Kinds, *, conv_bias: bool = True,
                sep: str = ".") -> list[ParamMapping]:
    """One `ParamMapping` per foreign array, in the rows' order.

    `rows` are (foreign layer name, JAX module path, kind); bias-free
    convolutions (`conv_bias=False`) have no conv bias entry.
    """
    return [ParamMapping(f"{prefix}{sep}{name}", (*path, leaf), to_jax, to_foreign)
            for prefix, path, kind in rows
            for name, leaf, to_jax, to_foreign in kinds[kind]
            if conv_bias or not (kind == "conv" and leaf == "bias")]


# Track counts of the published heads (Kelley 2020): a one-head file is named by its size.
PUBLISHED_HEADS = {5313: "human", 1643: "mouse"}


def head_name(tracks: int, head: str | None, base: ModelConfig) -> str:
    """The JAX name of a one-head file's head: `head`; else the name of `base`'s only head
    of that size (a preset or config JSON); else the published name of its size."""
    if head:
        return head
    same_size = [name for name, t in base.heads if t == tracks]
    if len(same_size) == 1:
        return same_size[0]
    if tracks not in PUBLISHED_HEADS:
        raise ConversionError(f"a head of {tracks} tracks is neither the published human (5313) nor mouse "
                              "(1643) head: name it with convert's --head (or a config JSON with that head)")
    return PUBLISHED_HEADS[tracks]


def fmt_keys(keys, limit: int = 8) -> str:
    keys = sorted(map(str, keys))
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def to_jax(foreign: Mapping[str, np.ndarray], table: list[ParamMapping],
           expected_shapes: Mapping[Path, tuple[int, ...]], what: str,
           defaults: Mapping[Path, np.ndarray] | None = None) -> dict:
    """Foreign arrays -> nested JAX pure dict.

    `expected_shapes` maps every JAX leaf of the target model to its shape;
    `defaults` fills leaves the foreign layout does not store (Keras has no
    num_batches_tracked). Missing, unexpected or mis-shaped names raise
    `ConversionError` naming them and `what` (the source's description).
    """
    expected = {m.foreign_key for m in table}
    missing, unexpected = expected - set(foreign), set(foreign) - expected
    if missing or unexpected:
        parts = ([f"missing keys: {fmt_keys(missing)}"] if missing else []) + \
                ([f"unexpected keys: {fmt_keys(unexpected)}"] if unexpected else [])
        raise ConversionError(f"{what}: " + "; ".join(parts))
    uncovered = set(expected_shapes) - {m.jax_path for m in table} - set(defaults or {})
    if uncovered:  # a table bug, not a user error: fail loudly all the same
        raise ConversionError(f"{what}: no foreign name for {fmt_keys('/'.join(map(str, p)) for p in uncovered)}")
    flat, bad = dict(defaults or {}), []
    for m in table:
        # np.array copies: arrays from live torch tensors share their memory,
        # and JAX on CPU may alias numpy buffers without copying.
        value = m.to_jax(np.array(foreign[m.foreign_key]))
        want = tuple(expected_shapes[m.jax_path])
        if value.shape != want:
            foreign_want = m.to_foreign(np.broadcast_to(np.zeros((), value.dtype), want)).shape
            bad.append(f"{m.foreign_key} has shape {tuple(np.shape(foreign[m.foreign_key]))}, "
                       f"expected {tuple(foreign_want)}")
            continue
        flat[m.jax_path] = value
    if bad:
        raise ConversionError(f"{what}: " + "; ".join(bad))
    return unflatten_dict(flat)


def from_jax(params: Mapping, table: list[ParamMapping], skip: Callable[[Path], bool] = lambda p: False
             ) -> dict[str, np.ndarray]:
    """Nested JAX pure dict -> {foreign key: array}, in the table's order.

    Every JAX leaf must be in the table, except those `skip` names (e.g. heads
    a single-head layout cannot hold).
    """
    flat = {p: v for p, v in flatten_dict(params).items() if not skip(p)}
    paths = {m.jax_path for m in table}
    missing, unexpected = paths - set(flat), set(flat) - paths
    if missing or unexpected:
        raise ConversionError(
            "JAX parameters do not match the model config: "
            f"missing {fmt_keys('/'.join(map(str, p)) for p in missing) or 'none'}; "
            f"unexpected {fmt_keys('/'.join(map(str, p)) for p in unexpected) or 'none'}")
    return {m.foreign_key: m.to_foreign(np.asarray(flat[m.jax_path])) for m in table}
