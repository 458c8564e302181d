"""Model checkpoints: an orbax directory holding parameters, BatchNorm
statistics and the model config, so every later command needs only the path.

Layout (orbax CompositeCheckpointHandler):
  CKPT/state/  Param + BatchStat variables as a nested dict (orbax StandardSave)
  CKPT/meta/   JSON: format tag, model config, torch layout of the origin
orbax writes into a temporary directory and renames it when complete, so an
interrupted save never leaves a checkpoint that looks finished. The metadata
also holds the CRC32C of every array and of itself (jax_basenji.integrity):
a damaged file is reported as such, never restored silently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jax_basenji.config import ModelConfig
from jax_basenji.errors import InputError, UserError
from jax_basenji.integrity import json_crc, leaf_paths, mismatches, tree_crcs
from jax_basenji.model import Basenji2, build_model, rng_state

FORMAT = "jax_basenji.model/1"
SAVED = nnx.Any(nnx.Param, nnx.BatchStat)  # RNG streams are not saved


def _drop_closed_loop_noise(hook=sys.unraisablehook):
    """When a read of a damaged checkpoint fails, tensorstore still completes the other reads
    orbax started and calls back into orbax's event loop, which is closed by then: each
    callback raises RuntimeError('Event loop is closed') as an unraisable exception, dozens
    of tracebacks after our one-line error. Those, and only those, are dropped."""

    def filtered(u):
        if not (isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == "Event loop is closed"):
            hook(u)

    sys.unraisablehook = filtered


_drop_closed_loop_noise()


class CheckpointError(UserError):
    """A path is not a jax_basenji checkpoint, or it does not fit the model."""


def _checkpointer() -> ocp.Checkpointer:
    """Use as a context manager: closing it stops orbax's background threads cleanly.

    A model checkpoint holds host arrays written or read by one process: in a multi-process
    run (training writes model_best from process 0) orbax must not wait for the others."""
    if jax.process_count() == 1:
        return ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    # Every layer that could wait for the other processes gets this process alone: the checkpointer,
    # the composite handler (its directory creation barrier) and the item handlers.
    me = jax.process_index()
    options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me},
                                                 barrier_sync_key_prefix=f"model_process_{me}")
    handler = ocp.CompositeCheckpointHandler(
        composite_options=ocp.CompositeOptions(multiprocessing_options=options),
        state=ocp.StandardCheckpointHandler(multiprocessing_options=options),
        meta=ocp.JsonCheckpointHandler(multiprocessing_options=options))
    return ocp.Checkpointer(handler, multiprocessing_options=options)


def seal(meta: dict, arrays) -> dict:
    """`meta` plus the CRC32C of every array of `arrays` and of the result itself."""
    meta = {**meta, "array_crc32c": tree_crcs(arrays),
            "array_shapes": {k: list(np.shape(v)) for k, v in leaf_paths(arrays).items()}}
    return {**meta, "meta_crc32c": json_crc(meta)}


def check_seal(path: str, meta: dict) -> None:
    """CheckpointError if `meta` carries a seal that its content does not match (older checkpoints have none)."""
    if "meta_crc32c" in meta and json_crc({k: v for k, v in meta.items() if k != "meta_crc32c"}) != meta[
            "meta_crc32c"]:
        raise CheckpointError(f"{path}: damaged checkpoint: its metadata (meta/metadata) does not match "
                              "its checksum")


def check_arrays(path: str, meta: dict, arrays) -> None:
    """CheckpointError naming the first array whose bytes do not match the checksum in `meta`."""
    if "array_crc32c" in meta:
        bad = mismatches(arrays, meta["array_crc32c"])
        if bad:
            raise CheckpointError(f"{path}: damaged checkpoint: {len(bad)} stored array(s) do not match their "
                                  f"checksums, first {bad[0]} (under state/)")


def damaged(path: str, e: Exception) -> CheckpointError:
    """A read failure of a checkpoint as one line: which checkpoint, and orbax's first line of cause."""
    cause = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    return CheckpointError(f"{path}: damaged or incomplete checkpoint ({type(e).__name__}: {cause})")


@contextlib.contextmanager
def quiet_absl():
    """orbax logs warnings through absl while probing damaged files; our error says it once."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def model_arrays(model: Basenji2) -> dict:
    """Nested dict of the saved variables (params + BatchNorm statistics)."""
    return nnx.to_pure_dict(nnx.state(model, SAVED))


def abstract_arrays(cfg: ModelConfig) -> dict:
    """Shapes/dtypes of `model_arrays` for `cfg`, without allocating anything."""
    model = nnx.eval_shape(lambda: build_model(cfg))
    return jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), model_arrays(model))


def model_with(cfg: ModelConfig, arrays: dict, seed: int = 0) -> Basenji2:
    """A model (train mode) holding `arrays` (as `model_arrays`: every parameter and BatchNorm statistic
    of `cfg`), built without drawing initial weights: `build_model` then `nnx.update` compiled and ran the
    random init of every parameter op by op, all of it overwritten (7-8 s on a 2-core CPU, published
    Basenji2 or tiny alike). Only the dropout streams are computed (`rng_state`)."""
    graph, want, _ = nnx.split(nnx.eval_shape(lambda: build_model(cfg, seed)), SAVED, ...)
    have = leaf_paths(arrays)
    for name, leaf in leaf_paths(nnx.to_pure_dict(want)).items():
        if name not in have:
            raise InputError(f"the weights lack {name} of the {cfg.variant} model")
        if tuple(np.shape(have[name])) != tuple(leaf.shape):
            raise InputError(f"the weights' {name} has shape {tuple(np.shape(have[name]))}, "
                             f"the {cfg.variant} model expects {tuple(leaf.shape)}")
    model = nnx.merge(graph, want, rng_state(cfg, seed))
    nnx.update(model, arrays)
    return model


def save_arrays(path: str, arrays: dict, cfg: ModelConfig, *, torch_new_head: str | None = None,
                overwrite: bool = False, extra: dict | None = None) -> None:
    """Write `arrays` (as from `model_arrays`) with `cfg` into checkpoint dir `path`.

    `torch_new_head`: the head that jax-to-torch writes as the seed's fine-tuning
    wrapper's `new_head`; `extra`: more metadata (e.g. the training config, and `head_targets`
    {head: targets.txt rows}, also written as `path/targets_<head>.txt`).
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise CheckpointError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    arrays = jax.tree.map(np.asarray, arrays)
    meta = seal({"format": FORMAT, "model_config": cfg.architecture().to_dict(), "torch_new_head": torch_new_head,
                 **(extra or {})}, arrays)
    with _checkpointer() as c:
        c.save(path, args=ocp.args.Composite(
            state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)), force=overwrite)
    # A readable copy of each recorded head table (the metadata's copy is the one commands read).
    from jax_basenji.data.layout import write_targets_file

    for head, rows in (meta.get("head_targets") or {}).items():
        write_targets_file(os.path.join(path, f"targets_{head}.txt"), rows)


def replace_checkpoint(path: str, arrays: dict, cfg: ModelConfig, **kwargs) -> None:
    """`save_arrays` onto an existing checkpoint, never leaving a half-written one at `path`: saved
    beside it, then swapped in by two renames. A crash between them leaves `path.replaced`, which the
    next call puts back before anything else."""
    path = os.path.abspath(path)
    fresh, old = path + ".saving", path + ".replaced"
    if not os.path.exists(path) and os.path.exists(old):
        os.replace(old, path)
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    save_arrays(fresh, arrays, cfg, **kwargs)
    if os.path.exists(path):
        os.replace(path, old)
    os.replace(fresh, path)
    shutil.rmtree(old, ignore_errors=True)


def n_value_of(meta: dict, override: float | None = None) -> float:
    """The N encoding to build sequences with: `override` (a --n-value flag), else the checkpoint's record
    (0.25 for a converted seed .pt), else 0."""
    return float(meta.get("n_value", 0.0)) if override is None else float(override)


def save_model(path: str, model: Basenji2, **kwargs) -> None:
    save_arrays(path, model_arrays(model), model.cfg, **kwargs)


def read_meta(path: str) -> dict[str, Any]:
    """The checkpoint's metadata; raises CheckpointError if `path` is not one."""
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.join(path, "meta")) or not os.path.isdir(os.path.join(path, "state")):
        raise CheckpointError(f"{path} is not a jax_basenji checkpoint (no meta/ and state/ inside)")
    try:
        with quiet_absl(), _checkpointer() as c:
            meta = c.restore(path, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # noqa: BLE001 - orbax raises many kinds on damaged files
        raise damaged(path, e) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: damaged checkpoint: meta/metadata is not a JSON object")
    check_seal(path, meta)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    return meta


def load_arrays(path: str) -> tuple[dict, ModelConfig, dict]:
    """(arrays, config, meta) of a checkpoint, restored against the config's shapes."""
    path = os.path.abspath(path)  # orbax refuses relative paths
    meta = read_meta(path)
    cfg = ModelConfig.from_dict(meta["model_config"])
    target = abstract_arrays(cfg)
    want = {k: tuple(v.shape) for k, v in leaf_paths(target).items()}
    stored = {k: tuple(v) for k, v in meta.get("array_shapes", want).items()}  # older checkpoints: unknown
    if stored != want:  # another version's layout, not damage (the shapes are sealed)
        bad = sorted(f"{k} {stored.get(k, 'missing')} != {want[k]}" for k in want if stored.get(k) != want[k])
        extra = sorted(set(stored) - set(want))
        raise CheckpointError(f"{path}: stored arrays do not match its model config: "
                              f"{', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}"
                              f"{' unexpected ' + ', '.join(extra[:4]) if extra else ''}")
    try:
        with quiet_absl(), _checkpointer() as c:
            restored = c.restore(path, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
    except Exception as e:  # noqa: BLE001 - the layout matched: a failing read is damage
        raise damaged(path, e) from None
    got = {k: tuple(np.shape(v)) for k, v in leaf_paths(restored).items()}
    if got != want:  # orbax restores the stored shapes whatever the target
        raise CheckpointError(f"{path}: damaged or incomplete checkpoint, or one of another model config: "
                              f"its arrays do not read back in the shapes of its model config")
    check_arrays(path, meta, restored)
    return restored, cfg, meta


def foreign_n_value(cfg: ModelConfig) -> float:
    """The N encoding a foreign file's model was trained with: the seed code's kipoiseq one-hot
    (N = 0.25) for its `.pt` files; the Basenji TFRecords' (N = 0) for the published Basenji2."""
    return 0.0 if cfg.variant == "basenji2" else 0.25


def recorded_n_value(meta: dict | None, cfg: ModelConfig) -> float:
    """The N encoding weights were trained with: a checkpoint's record (`meta`; 0 when it has none), or
    `foreign_n_value` for a `.pt`/`.pth`/`.h5` file (meta None) read as `cfg`."""
    return foreign_n_value(cfg) if meta is None else float(meta.get("n_value", 0.0))


def load_model(path: str, precision: str = "fp32") -> tuple[Basenji2, dict]:
    """Restore a model (in eval mode) and the checkpoint metadata; `precision` "bf16" computes in bfloat16."""
    arrays, cfg, meta = load_arrays(path)
    model = model_with(cfg.replace(dtype="bfloat16") if precision == "bf16" else cfg, arrays)
    model.eval()
    return model, meta
