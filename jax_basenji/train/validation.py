"""Validation during training: loss and Pearson R per track over the first batches of each validation set."""

from __future__ import annotations

import math
import sys

import numpy as np
from tqdm import tqdm

from jax_basenji.data import make_dataset
from jax_basenji.metrics import PearsonSums, assays, by_assay
from jax_basenji.sharding import global_batch


class Validator:
    """Runs `eval_step` over up to `max_batches` batches per species; keeps each species' per-track R."""

    def __init__(self, trainer, valid_src: dict, *, batch_size: int, max_batches: int, mesh, shard: dict,
                 progress: bool = False):
        self.trainer, self.valid_src, self.mesh, self.shard = trainer, valid_src, mesh, shard
        self.progress = progress
        self.batch_size, self.max_batches = batch_size, max_batches  # batch size per process
        self.track_assays = {s: assays(src.targets) for s, src in valid_src.items()}
        self.last_r: dict[str, np.ndarray] = {}  # {species: [tracks] Pearson R of the last validation}

    def __call__(self, state: dict) -> dict:
        """{species: summary row}: losses, mean Pearson R and its per-assay means."""
        summary = {}
        for s, src in self.valid_src.items():
            sums = PearsonSums()
            ds = make_dataset(src, batch_size=self.batch_size, shuffle=False, num_epochs=1, **self.shard)
            batches = min(self.max_batches, math.ceil(len(src) / (self.batch_size * self.shard["process_count"])))
            for k, batch in enumerate(tqdm(ds, total=batches, desc=f"validation {s}", unit="batch", leave=False,
                                           disable=not self.progress, file=sys.stderr)):
                if k >= self.max_batches:
                    break
                sums.add(self.trainer.eval_step(state, global_batch(batch, self.mesh), head=s))
            r_tracks = sums.pearson_r()
            self.last_r[s] = r_tracks
            summary[s] = {**sums.losses, "pearson_r": float(np.nanmean(r_tracks)),
                          "pearson_r_by_assay": by_assay(r_tracks, self.track_assays[s])}
        return summary
