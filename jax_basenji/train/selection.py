"""Which state is the best so far (WORKDIR/model_best), and when to stop early."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jax_basenji.train_config import TrainConfig


@dataclasses.dataclass
class Selection:
    """The selection metric's history, saved in every resumable checkpoint so a resume
    picks the same model_best and stops at the same round as an uninterrupted run."""

    metric: str  # "valid_loss" (lower is better) or "pearson_r" (higher is better)
    species: str  # a species/head name, or "mean" over them
    patience: int  # validations without improvement before stopping; 0: never
    best: float | None = None  # the best value so far
    round: int | None = None  # the round it came from
    stale: int = 0  # validations since it improved
    stopped: bool = False  # the run stopped early (a re-run does not train further)

    @classmethod
    def for_run(cls, tc: TrainConfig, saved: dict | None = None) -> "Selection":
        sel = cls(tc.select, tc.selection_species, tc.patience)
        if saved and (saved["metric"], saved["species"]) == (sel.metric, sel.species):
            sel.best, sel.round, sel.stale, sel.stopped = saved["best"], saved["round"], saved["stale"], \
                saved["stopped"]
        return sel

    def value(self, summary: dict) -> float:
        """The metric of a validation summary ({species: {"loss", "pearson_r", ...}})."""
        key = "loss" if self.metric == "valid_loss" else "pearson_r"
        names = list(summary) if self.species == "mean" else [self.species]
        return float(np.mean([summary[s][key] for s in names]))

    def update(self, summary: dict, step: int) -> bool:
        """Record a validation; True if it is the best so far (a NaN never is)."""
        v = self.value(summary)
        better = math.isfinite(v) and (self.best is None or
                                       (v < self.best if self.metric == "valid_loss" else v > self.best))
        if better:
            self.best, self.round, self.stale = v, step, 0
        else:
            self.stale += 1
        if self.patience and self.stale >= self.patience:
            self.stopped = True
        return better

    def describe(self) -> str:
        who = "the mean over species" if self.species == "mean" else self.species
        return f"{self.metric} of {who}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
