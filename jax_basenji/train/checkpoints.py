"""A training run's checkpoints (orbax CheckpointManager) under WORKDIR/checkpoints/.

  latest/ROUND/   the last `keep` saves (async): state, sealed metadata, and as `data` the
                  data iterator positions and the model selection's history
  damaged/        checkpoints a resume could not read back, moved aside (kept for inspection)

(The best model is not a training checkpoint: it is WORKDIR/model_best, a model
checkpoint that every command reads, see loop.py.)

Every `latest` save is sealed with the CRC32C of each state array and of the
iterator positions (jax_basenji.integrity): orbax has no checksums of its own,
so a damaged file would otherwise restore silently different weights. A resume
takes the newest save that reads back completely and moves the newer, damaged
ones aside, so a bad disk block costs `checkpoint_every` rounds, not the run.
"""

from __future__ import annotations

import os
import shutil
import sys

import jax
import orbax.checkpoint as ocp

from jax_basenji.checkpoint import CheckpointError, check_arrays, check_seal, damaged, quiet_absl, seal
from jax_basenji.config import ModelConfig
from jax_basenji.integrity import json_crc


class ConfigMismatch(CheckpointError):
    """The workdir's checkpoint belongs to another run (model config or N encoding): not damage."""


def config_diff(saved: dict, current: dict) -> list[str]:
    return [f"{k}={saved.get(k)!r} (now {current.get(k)!r})" for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k)]


class RunCheckpoints:
    """Save, restore and fall back over the run's checkpoints; `meta` is what every save records."""

    def __init__(self, workdir: str, meta: dict, keep: int = 2):
        self.dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.meta = meta
        self.latest = ocp.CheckpointManager(os.path.join(self.dir, "latest"), options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=True))

    def save_latest(self, step: int, state: dict, iterators: dict, selection: dict) -> None:
        """Async save of `state`, the iterator positions ({species: grain state}) and the selection history."""
        data = {"iterators": iterators, "selection": selection}
        meta = seal({**self.meta, "data_crc32c": json_crc(data)}, state)
        self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta), data=ocp.args.JsonSave(data)))

    def last_good(self) -> int | None:
        return self.latest.latest_step()

    def restore(self, abstract_state) -> tuple[int, dict, dict, dict | None] | None:
        """(round, state, iterator positions, selection history) of the newest save that reads back completely; None if
        there is none. Newer, damaged saves are moved aside. If every save is damaged, nothing is
        moved and the run stops: starting afresh silently would discard the run.

        A save of another model config is an error (not damage): the workdir belongs to another run.
        """
        steps, damaged_saves = sorted(self.latest.all_steps(), reverse=True), []
        for step in steps:
            try:
                restored = self._read(step, os.path.join(self.latest.directory, str(step)), abstract_state)
            except ConfigMismatch:
                raise
            except CheckpointError as e:
                damaged_saves.append((step, e))
                continue
            for bad, why in damaged_saves:
                self._set_aside(bad, why)
            data = restored["data"]
            if "iterators" not in data:  # saved before the selection history was
                data = {"iterators": data, "selection": None}
            return step, restored["state"], data["iterators"], data["selection"]
        if damaged_saves:
            raise CheckpointError(f"no checkpoint in {self.latest.directory} reads back completely "
                                  f"({len(steps)} damaged; the newest: {damaged_saves[0][1]}); move that "
                                  "directory away to start the run afresh")
        return None

    def _read(self, step: int, where: str, abstract_state) -> dict:
        try:
            with quiet_absl():
                meta = self.latest.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # noqa: BLE001 - orbax raises many kinds on damaged files
            raise damaged(where, e) from None
        if not isinstance(meta, dict):
            raise CheckpointError(f"{where}: damaged checkpoint: meta/metadata is not a JSON object")
        check_seal(where, meta)
        saved = ModelConfig.from_dict(meta["model_config"]).architecture().to_dict()
        diff = config_diff(saved, self.meta["model_config"])
        if diff:
            raise ConfigMismatch(f"{os.path.dirname(self.dir)} holds a checkpoint of another model config: "
                                 f"{', '.join(diff)}")
        saved_n, now_n = meta.get("train_config", {}).get("n_value"), self.meta["train_config"]["n_value"]
        if saved_n is not None and saved_n != now_n:  # the inputs would change mid-run
            raise ConfigMismatch(f"{os.path.dirname(self.dir)} holds a run trained with N = {saved_n}; this one "
                                 f"would use {now_n}: pass --n-value {saved_n} to resume it")
        try:
            with quiet_absl():
                restored = self.latest.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001
            raise damaged(where, e) from None
        check_arrays(where, meta, restored["state"])
        if "data_crc32c" in meta and json_crc(restored["data"]) != meta["data_crc32c"]:
            raise CheckpointError(f"{where}: damaged checkpoint: the data positions (data/metadata) do not "
                                  "match their checksum")
        return restored

    def _set_aside(self, step: int, why: CheckpointError) -> None:
        """Move a damaged save out of `latest/` (its round will be saved again) and say so in one line."""
        target = os.path.join(self.dir, "damaged", f"latest-{step}")
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(os.path.join(self.latest.directory, str(step)), target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
        self.latest.reload()
        print(f"skipped the checkpoint of round {step}: {why}; moved to {target}", file=sys.stderr)

    def close(self) -> None:
        """Wait for pending saves, then stop orbax's background threads."""
        self.latest.wait_until_finished()
        self.latest.close()
