"""One region of `predict regions` as a PNG: its predicted tracks, and measured bigWig tracks under them."""

from __future__ import annotations

import os
import sys

import numpy as np

from jax_basenji.errors import InputError
from jax_basenji.metrics import pyplot, save_png


def measured_track(path: str, targets: list[dict[str, str]] | None):
    """A measured bigWig binned as the head's targets were: the sum/mean, clip and scale of the track whose
    targets.txt `file` has this file name (what `data tracks` recorded), else plain per-bin sums."""
    from jax_basenji.data.tracks import Track, file_stem

    for row in targets or ():
        if os.path.basename(row.get("file") or "") == os.path.basename(path):
            clip = row.get("clip")
            return Track(path, file_stem(path), row.get("assay", ""), row.get("sum_stat") or "sum",
                         float(clip) if clip not in (None, "", "None") else None, float(row.get("scale") or 1.0))
    return Track(path, file_stem(path), "")


def measured_bins(track, chrom: str, start: int, n_bins: int, pool: int) -> np.ndarray:
    """`[n_bins]` of a measured `Track` from bin start `start` (zeros outside its data)."""
    from jax_basenji.data.layout import DataError
    from jax_basenji.data.tracks import BigWigBinner

    try:
        return BigWigBinner(track, pool).bins(chrom, start, start + n_bins * pool)
    except DataError as e:
        raise InputError(str(e)) from None


def _measured_label(track) -> str:
    how = [track.sum_stat] + ([f"clip {track.clip:g}"] if track.clip is not None else []) + \
        ([f"x {track.scale:g}"] if track.scale != 1 else [])
    return f"measured\n{os.path.basename(track.file)}\n({', '.join(how)})"


def plot_region(h5_path: str, which: str, measured: list[str], max_tracks: int = 8,
                targets: list[dict[str, str]] | None = None) -> str:
    """PNG beside the HDF5: up to `max_tracks` predicted tracks of one region (by name or row), then
    each measured bigWig over the same bins, binned as the head's `targets` record (`measured_track`)."""
    import h5py

    with h5py.File(h5_path, "r") as h5:
        if h5["preds"].ndim != 3:
            raise InputError("--plot needs the bins: leave out --sum")
        names = [n.decode() if isinstance(n, bytes) else n for n in h5["name"][:]]
        row = names.index(which) if which in names else (int(which) if which.isdigit() else None)
        if row is None or row >= len(names):
            raise InputError(f"--plot {which!r} is neither a region name nor a row of {h5_path}")
        preds = h5["preds"][row][:, :max_tracks].astype(np.float32)
        labels = [t.decode() if isinstance(t, bytes) else t for t in h5["target_ids"][:max_tracks]]
        chrom = h5["chrom"][row]
        chrom = chrom.decode() if isinstance(chrom, bytes) else chrom
        start, pool = int(h5["bin_start"][row]), int(h5.attrs["pool_width"])
        total = h5["preds"].shape[2]
    if total > max_tracks:  # said, not silent: which tracks are drawn is the user's choice
        print(f"warning: --plot draws the first {max_tracks} of {total} tracks; choose them with --tracks",
              file=sys.stderr)
    shown = "predicted (blue) and measured (gray) tracks" if measured else "predicted tracks"
    # a measured row in the predictions' units: binned as that track's training targets were
    rows = [measured_track(p, targets) for p in measured]
    fig = tracks_figure(preds, labels, [(_measured_label(t), measured_bins(t, chrom, start, preds.shape[0], pool))
                                        for t in rows],
                        chrom=chrom, start=start, pool=pool, title=f"{names[row]}: {shown}, {pool} bp bins")
    return save_png(fig, plot_path(h5_path, names[row]))


def tracks_figure(preds: np.ndarray, labels: list[str], measured: list[tuple[str, np.ndarray]], *, chrom: str = "",
                  start: int = 0, pool: int = 128, title: str = ""):
    """A Figure of `[bins, tracks]` predictions (blue), then each (label, `[bins]`) measured row (gray)."""
    n_bins = preds.shape[0]
    x = (start + pool * np.arange(n_bins)) / 1e3
    plt = pyplot()
    rows = preds.shape[1] + len(measured)
    fig, axes = plt.subplots(rows, 1, figsize=(10, 1.1 * rows + 0.8), sharex=True, squeeze=False)
    for k in range(preds.shape[1]):
        axes[k, 0].fill_between(x, preds[:, k], step="mid", color="tab:blue")
        axes[k, 0].set_ylabel(labels[k], rotation=0, ha="right", fontsize=8)
    for j, (label, values) in enumerate(measured):
        ax = axes[preds.shape[1] + j, 0]
        ax.fill_between(x, values, step="mid", color="tab:gray")
        ax.set_ylabel(label, rotation=0, ha="right", fontsize=8)
    axes[-1, 0].set_xlabel(f"{chrom} position (kb)".strip())
    fig.suptitle(title)
    return fig


def plot_path(h5_path: str, region: str) -> str:
    """OUT_{region}.png beside OUT.h5."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in region)
    return f"{os.path.splitext(h5_path)[0]}_{safe}.png"
