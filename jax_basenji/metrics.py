"""Validation metrics and their outputs: Pearson R from running sums, per-assay
summaries, metrics.jsonl, TensorBoard events and PNG curves."""

from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np

from jax_basenji.atomic import atomic_path

SUM_KEYS = ("n", "x", "y", "xy", "xx", "yy")


class PearsonSums:
    """Running per-track sums (Σx, Σy, Σxy, Σx², Σy², n) over positions, float64 on the host,
    and the mean of every loss an eval step reports (`loss`, `loss_<group>`)."""

    def __init__(self):
        self.sums: dict[str, np.ndarray] | None = None
        self.loss_sums: dict[str, float] = defaultdict(float)
        self.batches = 0

    def add(self, out: dict) -> None:
        """`out`: an eval step's {"loss", "n", "x", ...} (device arrays are fetched here)."""
        host = {k: np.asarray(out[k], np.float64) for k in SUM_KEYS}
        self.sums = host if self.sums is None else {k: self.sums[k] + host[k] for k in SUM_KEYS}
        for k, v in out.items():
            if k.startswith("loss"):
                self.loss_sums[k] += float(v)
        self.batches += 1

    @property
    def losses(self) -> dict[str, float]:
        """{"loss": mean loss, "loss_<group>": ...} over the batches seen."""
        return {k: v / max(self.batches, 1) for k, v in self.loss_sums.items()}

    @property
    def loss(self) -> float:
        return self.losses.get("loss", 0.0)

    def pearson_r(self) -> np.ndarray:
        """`[T]` Pearson R per track across all positions seen (NaN for constant tracks)."""
        s = self.sums
        n = s["n"]
        cov = s["xy"] / n - (s["x"] / n) * (s["y"] / n)
        var_x = s["xx"] / n - (s["x"] / n) ** 2
        var_y = s["yy"] / n - (s["y"] / n) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            return cov / np.sqrt(var_x * var_y)


def assays(targets: list[dict[str, str]]) -> list[str]:
    """Assay of each track: the description's text before the first ':' (CAGE, DNASE, ...)."""
    return [t.get("description", "").split(":")[0].strip().upper() or "UNKNOWN" for t in targets]


def by_assay(r: np.ndarray, track_assays: list[str]) -> dict[str, float]:
    groups = defaultdict(list)
    for value, assay in zip(r, track_assays):
        groups[assay].append(value)
    return {a: float(np.nanmean(v)) for a, v in sorted(groups.items())}


class MetricsWriter:
    """metrics.jsonl (one object per line) + TensorBoard events, on process 0 only."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        prefix = f"{record['split']}/{record['species']}"
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "step" and np.isfinite(value):
                self._tb.add_scalar(f"{prefix}/{key}", value, record["step"])
            elif isinstance(value, dict):
                for sub, v in value.items():
                    if np.isfinite(v):
                        self._tb.add_scalar(f"{prefix}/{key}/{sub}", v, record["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(workdir: str, final_r: dict[str, np.ndarray] | None = None) -> list[str]:
    """loss.png, pearson_r.png (and pearson_r_hist.png from the last validation); returns paths."""
    plt = pyplot()
    records = read_metrics(workdir)
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for split in ("train", "valid"):
        for species in sorted({r["species"] for r in records if r["split"] == split}):
            rows = [r for r in records if r["split"] == split and r["species"] == species]
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=f"{split} {species}",
                    alpha=0.5 if split == "train" else 1.0, marker=None if split == "train" else "o")
    ax.set(xlabel="round", ylabel="Poisson loss", title="loss")
    ax.legend()
    paths.append(save_png(fig, os.path.join(workdir, "loss.png")))
    fig, ax = plt.subplots(figsize=(7, 4))
    for species in sorted({r["species"] for r in records if r["split"] == "valid"}):
        rows = [r for r in records if r["split"] == "valid" and r["species"] == species]
        ax.plot([r["step"] for r in rows], [r["pearson_r"] for r in rows], marker="o", label=species)
    ax.set(xlabel="round", ylabel="mean Pearson R (validation)", title="Pearson R across positions")
    ax.legend()
    paths.append(save_png(fig, os.path.join(workdir, "pearson_r.png")))
    if final_r:
        fig, ax = plt.subplots(figsize=(7, 4))
        for species, r in final_r.items():
            ax.hist(r[np.isfinite(r)], bins=30, alpha=0.6, label=species)
        ax.set(xlabel="Pearson R per track (last validation)", ylabel="tracks")
        ax.legend()
        paths.append(save_png(fig, os.path.join(workdir, "pearson_r_hist.png")))
    return paths


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str) -> str:
    """Write `fig` to a temporary name, rename it to `path`, close it; returns `path`."""
    plt = pyplot()
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
