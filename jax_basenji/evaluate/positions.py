"""Correlation across positions: every bin of every sequence of a store subset.

Per track: Pearson R (running float64 sums, as the seed's validation), R²
(1 - SS_res / SS_tot from the same sums) and Spearman R (on a fixed random
sample of positions: ranking all N x 896 positions of thousands of tracks
would not fit in memory). Targets of `log1p_assays` (by default the assays the
head was fine-tuned on as log(x+1), e.g. RNA with `finetune --log1p rna`) are
compared as log(x+1). `max_sequences` keeps the first N sequences
of the subset in store order (the seed's view: the first 400 validation sequences).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from tqdm import tqdm

from jax_basenji.cli import InputError
from jax_basenji.data import make_dataset
from jax_basenji.data.source import read_as_one
from jax_basenji.evaluate.common import histogram, spearman_columns, write_tsv
from jax_basenji.predict.core import load_predictor
from jax_basenji.metrics import PearsonSums, centered_moments
from jax_basenji.predict import Ensemble
from jax_basenji.tracks import assays_of, head_targets, log1p_tracks, track_table


def evaluate_positions(checkpoint_dir: str, stores: list[str], species: str, subset: str, head: str, output: str, *,
                       batch_size: int = 4, spearman_positions: int = 100_000, log1p_assays: list[str] | None = None,
                       progress: bool = True, ensemble: Ensemble = Ensemble(), precision: str = "fp32",
                       max_sequences: int | None = None, n_value: float | None = None,
                       devices: int | None = None) -> dict:
    """Write tracks.tsv, assays.tsv and pearson_r_hist.png into `output`; returns the summary.

    Several `stores` over the same regions are read as one, tracks concatenated in order
    (as `finetune --data` trains them).
    """
    source = read_as_one(stores, species, subset)
    if max_sequences is not None:
        if max_sequences < 1:
            raise InputError(f"--max-sequences {max_sequences}: at least 1")
        source = FirstSequences(source, max_sequences)
    predictor, meta = load_predictor(checkpoint_dir, head, ensemble, source.strand_pair, precision, n_value,
                                     devices=devices)
    store = "+".join(stores)
    bins = predictor.model.cfg.output_bins(source.seq_length)
    tracks = predictor.model.cfg.head_tracks[head]
    if source.target_shape != (bins, tracks):
        raise InputError(f"{store}/{species}/{subset}: targets are {source.target_shape} (bins, tracks); head "
                         f"{head!r} predicts {bins} x {tracks} at {source.seq_length} bp")
    table = track_table(tracks, head_targets(meta, head, fallback=source.targets))
    log1p = log1p_tracks(meta, head, table, log1p_assays)

    n_pos = len(source) * bins
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n_pos, min(spearman_positions, n_pos), replace=False))
    # The Spearman sample, float32 (predictions are float32; Spearman ranks the raw targets,
    # since log(x+1) does not change ranks): 2 x 2.1 GB at 100,000 positions x 5313 tracks.
    sx = np.empty((len(sample), tracks), np.float32)
    sy = np.empty((len(sample), tracks), np.float32)
    sums = PearsonSums()
    ds = make_dataset(source, batch_size=batch_size, shuffle=False, num_epochs=1, drop_remainder=False)
    seen = 0
    bar = tqdm(total=len(source), unit="seq", disable=not progress, file=sys.stderr, desc="positions")
    for batch in ds:
        x = predictor.padded(batch["sequence"], batch_size).reshape(-1, tracks)
        raw = batch["target"].reshape(-1, tracks)
        lo, hi = np.searchsorted(sample, [seen, seen + len(x)])
        sx[lo:hi], sy[lo:hi] = x[sample[lo:hi] - seen], raw[sample[lo:hi] - seen]
        y = raw.astype(np.float64)
        y[:, log1p] = np.log1p(y[:, log1p])
        sums.add(centered_moments(x.astype(np.float64), y, axis=0))
        seen += len(x)
        bar.update(len(batch["sequence"]))
    bar.close()

    pearson, r2 = sums.pearson_r(), sums.r2()
    spearman = spearman_columns(sx, sy)

    os.makedirs(output, exist_ok=True)
    cols = ["index", "identifier", "description", "assay"]
    write_tsv(os.path.join(output, "tracks.tsv"), cols + ["pearson_r", "r2", "spearman_r"],
              ([t[c] for c in cols] + [pearson[i], r2[i], spearman[i]] for i, t in enumerate(table)))
    kinds = sorted({t["assay"] for t in table})
    per_assay = {}
    for a in kinds:
        idx = [i for i, t in enumerate(table) if t["assay"] == a]
        per_assay[a] = {"tracks": len(idx), "pearson_r": float(np.nanmean(pearson[idx])),
                        "pearson_r_median": float(np.nanmedian(pearson[idx])),
                        "r2": float(np.nanmean(r2[idx])), "spearman_r": float(np.nanmean(spearman[idx]))}
    write_tsv(os.path.join(output, "assays.tsv"),
              ["assay", "tracks", "pearson_r", "pearson_r_median", "r2", "spearman_r"],
              ([a, *per_assay[a].values()] for a in kinds))
    histogram(pearson, os.path.join(output, "pearson_r_hist.png"), "Pearson R per track across positions",
              f"{species} {subset}, head {head}")
    return {"sequences": len(source), "max_sequences": max_sequences, "positions": seen, "spearman_positions": len(sx),
            "pearson_r": float(np.nanmean(pearson)), "r2": float(np.nanmean(r2)),
            "spearman_r": float(np.nanmean(spearman)), "by_assay": per_assay, "log1p_assays": assays_of(table, log1p)}


class FirstSequences:
    """The first `n` examples of a source, in its order (all of them if it has fewer)."""

    def __init__(self, source, n: int):
        self.source, self.n = source, min(n, len(source))
        self.seq_length, self.subset, self.strand_pair = source.seq_length, source.subset, source.strand_pair

    def __len__(self) -> int:
        return self.n

    @property
    def target_shape(self) -> tuple[int, int]:
        return self.source.target_shape

    @property
    def targets(self) -> list[dict[str, str]]:
        return self.source.targets

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.source[i]
