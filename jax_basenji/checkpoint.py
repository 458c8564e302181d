"""Model checkpoints: an orbax directory holding parameters, BatchNorm
statistics and the model config, so every later command needs only the path.

Layout (orbax CompositeCheckpointHandler):
  CKPT/state/  Param + BatchStat variables as a nested dict (orbax StandardSave)
  CKPT/meta/   JSON: format tag, model config, torch layout of the origin
orbax writes into a temporary directory and renames it when complete, so an
interrupted save never leaves a checkpoint that looks finished.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from flax.traverse_util import flatten_dict

from jax_basenji.config import ModelConfig
from jax_basenji.errors import UserError
from jax_basenji.model import Basenji2, build_model

FORMAT = "jax_basenji.model/1"
SAVED = nnx.Any(nnx.Param, nnx.BatchStat)  # RNG streams are not saved


class CheckpointError(UserError):
    """A path is not a jax_basenji checkpoint, or it does not fit the model."""


def _checkpointer() -> ocp.Checkpointer:
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def model_arrays(model: Basenji2) -> dict:
    """Nested dict of the saved variables (params + BatchNorm statistics)."""
    return nnx.to_pure_dict(nnx.state(model, SAVED))


def abstract_arrays(cfg: ModelConfig) -> dict:
    """Shapes/dtypes of `model_arrays` for `cfg`, without allocating anything."""
    model = nnx.eval_shape(lambda: build_model(cfg))
    return jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), model_arrays(model))


def save_arrays(path: str, arrays: dict, cfg: ModelConfig, *, torch_new_head: str | None = None,
                overwrite: bool = False, extra: dict | None = None) -> None:
    """Write `arrays` (as from `model_arrays`) with `cfg` into checkpoint dir `path`.

    `torch_new_head`: the head that jax-to-torch writes as the seed's fine-tuning
    wrapper's `new_head`; `extra`: more metadata (e.g. the training config).
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise CheckpointError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    meta = {"format": FORMAT, "model_config": cfg.architecture().to_dict(), "torch_new_head": torch_new_head,
            **(extra or {})}
    arrays = jax.tree.map(np.asarray, arrays)
    _checkpointer().save(path, args=ocp.args.Composite(
        state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)), force=overwrite)


def save_model(path: str, model: Basenji2, **kwargs) -> None:
    save_arrays(path, model_arrays(model), model.cfg, **kwargs)


def read_meta(path: str) -> dict[str, Any]:
    """The checkpoint's metadata; raises CheckpointError if `path` is not one."""
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.join(path, "meta")) or not os.path.isdir(os.path.join(path, "state")):
        raise CheckpointError(f"{path} is not a jax_basenji checkpoint (no meta/ and state/ inside)")
    meta = _checkpointer().restore(path, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    return meta


def load_arrays(path: str) -> tuple[dict, ModelConfig, dict]:
    """(arrays, config, meta) of a checkpoint, restored against the config's shapes."""
    meta = read_meta(path)
    cfg = ModelConfig.from_dict(meta["model_config"])
    target = abstract_arrays(cfg)
    try:
        restored = _checkpointer().restore(os.path.abspath(path), args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))["state"]
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: stored arrays do not match its model config: {e}") from e
    # orbax restores stored shapes even when the target differs: check them here.
    want, got = flatten_dict(target), flatten_dict(restored)
    bad = sorted("/".join(map(str, p)) + f" {tuple(np.shape(got[p])) if p in got else 'missing'}"
                 f" != {want[p].shape}" for p in want if p not in got or np.shape(got[p]) != want[p].shape)
    if bad or set(got) - set(want):
        extra = sorted("/".join(map(str, p)) for p in set(got) - set(want))
        raise CheckpointError(f"{path}: stored arrays do not match its model config: "
                              f"{', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}"
                              f"{' unexpected ' + ', '.join(extra[:4]) if extra else ''}")
    return restored, cfg, meta


def load_model(path: str, precision: str = "fp32") -> tuple[Basenji2, dict]:
    """Restore a model (in eval mode) and the checkpoint metadata; `precision` "bf16" computes in bfloat16."""
    arrays, cfg, meta = load_arrays(path)
    model = build_model(cfg.replace(dtype="bfloat16") if precision == "bf16" else cfg)
    nnx.update(model, arrays)
    model.eval()
    return model, meta
