"""One region of `predict regions` as a PNG: its predicted tracks, and measured bigWig tracks under them."""

from __future__ import annotations

import os
import sys

import numpy as np

from jax_basenji.errors import InputError
from jax_basenji.metrics import pyplot, save_png


def measured_bins(path: str, chrom: str, start: int, n_bins: int, pool: int) -> np.ndarray:
    """`[n_bins]` sums of a bigWig over the bins (zeros outside its data)."""
    import pyBigWig

    try:
        bw = pyBigWig.open(path)
    except RuntimeError:
        bw = None
    if bw is None:
        raise InputError(f"{path} is not a readable bigWig file")
    size = bw.chroms().get(chrom)
    out = np.zeros(n_bins * pool)
    if size:
        lo, hi = max(start, 0), min(start + n_bins * pool, size)
        if lo < hi:
            out[lo - start:hi - start] = np.nan_to_num(bw.values(chrom, lo, hi, numpy=True))
    bw.close()
    return out.reshape(n_bins, pool).sum(axis=1)


def plot_region(h5_path: str, which: str, measured: list[str], max_tracks: int = 8) -> str:
    """PNG beside the HDF5: up to `max_tracks` predicted tracks of one region (by name or row), then
    each measured bigWig over the same bins."""
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
    # both are sums over each bin: the model's targets are bigWig coverage summed per bin
    fig = tracks_figure(preds, labels, [(f"measured\n{os.path.basename(p)}",
                                         measured_bins(p, chrom, start, preds.shape[0], pool)) for p in measured],
                        chrom=chrom, start=start, pool=pool, title=f"{names[row]}: {shown}, sums over {pool} bp bins")
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
