"""Validation metrics and their outputs: Pearson R from running sums, per-assay
summaries, metrics.jsonl, TensorBoard events and PNG curves."""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict

import numpy as np

from jax_basenji.atomic import atomic_path

MOMENT_KEYS = ("n", "mx", "my", "sdx", "sdy", "m2x", "m2y", "cxy")


def centered_moments(x, y, axis) -> dict:
    """Per-track sums of one batch around its own (rounded) means, numpy or jax arrays.

    Centring inside the batch keeps float32 device sums accurate where raw sums
    (Σxy − ΣxΣy/n) cancel catastrophically (large means, small variances). The
    float32 means are themselves rounded, so the residuals `sdx` = Σ(x − mx) are kept
    too: `PearsonSums` corrects the means and sums with them in float64.
    """
    n = np.prod([x.shape[a] for a in np.atleast_1d(axis)])
    mx, my = x.mean(axis), y.mean(axis)
    dx, dy = x - mx, y - my
    return {"n": n + 0 * mx, "mx": mx, "my": my, "sdx": dx.sum(axis), "sdy": dy.sum(axis),
            "m2x": (dx * dx).sum(axis), "m2y": (dy * dy).sum(axis), "cxy": (dx * dy).sum(axis)}


def _exact_moments(b: dict) -> dict:
    """float64 means and sums centred on them, from `centered_moments` of a batch."""
    n = b["n"]
    ex, ey = b["sdx"] / n, b["sdy"] / n  # the rounding error of the batch means
    return {"n": n, "mx": b["mx"] + ex, "my": b["my"] + ey, "m2x": b["m2x"] - n * ex * ex,
            "m2y": b["m2y"] - n * ey * ey, "cxy": b["cxy"] - n * ex * ey}


class PearsonSums:
    """Per-track Pearson R (and R²) across every position of many batches, merged in float64
    on the host with Chan et al.'s pairwise update of centred moments; also the mean of every
    loss an eval step reports (`loss`, `loss_<group>`)."""

    def __init__(self):
        self.m: dict[str, np.ndarray] | None = None
        self.loss_sums: dict[str, float] = defaultdict(float)
        self.batches = 0

    def add(self, out: dict) -> None:
        """`out`: `centered_moments` of a batch, plus losses (device arrays are fetched here)."""
        b = _exact_moments({k: np.asarray(out[k], np.float64) for k in MOMENT_KEYS})
        if self.m is None:
            self.m = b
        else:
            a = self.m
            n = a["n"] + b["n"]
            dx, dy = b["mx"] - a["mx"], b["my"] - a["my"]
            w = a["n"] * b["n"] / n
            self.m = {"n": n, "mx": a["mx"] + dx * b["n"] / n, "my": a["my"] + dy * b["n"] / n,
                      "m2x": a["m2x"] + b["m2x"] + dx * dx * w, "m2y": a["m2y"] + b["m2y"] + dy * dy * w,
                      "cxy": a["cxy"] + b["cxy"] + dx * dy * w}
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
        m = self.m
        with np.errstate(invalid="ignore", divide="ignore"):
            return m["cxy"] / np.sqrt(m["m2x"] * m["m2y"])

    def r2(self) -> np.ndarray:
        """`[T]` coefficient of determination of x (prediction) for y: 1 − Σ(y − x)² / Σ(y − ȳ)²."""
        m = self.m
        sse = m["m2x"] + m["m2y"] - 2 * m["cxy"] + m["n"] * (m["mx"] - m["my"]) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - sse / m["m2y"]


def assays(targets: list[dict[str, str]]) -> list[str]:
    """Assay of each track: the description's text before the first ':' (CAGE, DNASE, ...).

    ChIP is split as the seed's evaluation reports it: CHIP_HISTONE when a word of the
    description after `CHIP:` is a histone mark (`CHIP:H3K27ac:...`, and the
    `CHIP:.:batch1_chrom1_LoVo_H3K4me1_...` form), CHIP_TF for every other `CHIP:` track.
    """
    import re

    # A histone mark or variant: H3K27ac, H4K20me1, H2AFZ, H2BK5ac, H3F3A, H3T11ph, H3ac, plain H3;
    # not HDAC2, HNF4A, HSF1 (transcription factors whose names start with H).
    histone = re.compile(r"H(?:2A|2B|3|4)(?:[A-Z][A-Za-z0-9.]*|[a-z]{2}[A-Za-z0-9.]*)?")
    kinds = []
    for t in targets:
        assay, _, rest = t.get("description", "").partition(":")
        assay = assay.strip().upper() or "UNKNOWN"
        if assay == "CHIP":
            words = re.split(r"[\s_:/,;()]+", rest)
            assay = "CHIP_HISTONE" if any(histone.fullmatch(w) for w in words) else "CHIP_TF"
        kinds.append(assay)
    return kinds


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
            self._tb = _summary_writer()(os.path.join(workdir, "tensorboard"))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        prefix = f"{record['split']}/{_head(record)}"
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


def _summary_writer() -> type:
    """tensorboardX's SummaryWriter, imported without torch.

    tensorboardX imports torch whenever it is installed, only to accept torch tensors (we pass
    floats): 3.5-4.5 s at every training start on a 2-core CPU. Where torch is not loaded yet, it
    is hidden for the import (tensorboardX takes the ImportError path) and can be imported later.
    """
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # `import torch` raises ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide:
            del sys.modules["torch"]
    return SummaryWriter


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _head(row: dict) -> str:
    """The head a metrics row is about (rows written before `head` existed name it `species`)."""
    return row.get("head", row.get("species"))


def plot_curves(workdir: str, final_r: dict[str, np.ndarray] | None = None) -> list[str]:
    """loss.png, pearson_r.png (and pearson_r_hist.png from the last validation); returns paths."""
    plt = pyplot()
    records = read_metrics(workdir)
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for split in ("train", "valid"):
        for head in sorted({_head(r) for r in records if r["split"] == split}):
            rows = [r for r in records if r["split"] == split and _head(r) == head]
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=f"{split} {head}",
                    alpha=0.5 if split == "train" else 1.0, marker=None if split == "train" else "o")
    ax.set(xlabel="round", ylabel="Poisson loss", title="loss")
    ax.legend()
    paths.append(save_png(fig, os.path.join(workdir, "loss.png")))
    fig, ax = plt.subplots(figsize=(7, 4))
    for head in sorted({_head(r) for r in records if r["split"] == "valid"}):
        rows = [r for r in records if r["split"] == "valid" and _head(r) == head]
        ax.plot([r["step"] for r in rows], [r["pearson_r"] for r in rows], marker="o", label=head)
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
