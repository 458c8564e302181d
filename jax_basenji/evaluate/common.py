"""Shared pieces of the evaluations: statistics, windows of bins, tables and plots."""

from __future__ import annotations

import numpy as np

from jax_basenji.atomic import atomic_open
from jax_basenji.cli import InputError
from jax_basenji.geometry import central_bins
from jax_basenji.metrics import pyplot, save_png


def center_bins(bins: int, width: int = 3) -> slice:
    """The `width` centre bins; the seed's TSS rule is 3: 447, 448, 449 of 896."""
    check_width(width, bins)
    return central_bins(bins, width)


def check_width(width: int, bins: int | None = None) -> int:
    """`width` if it is an odd bin count (a window centred on one bin), else InputError."""
    if width < 1 or width % 2 == 0 or (bins is not None and width > bins):
        limit = f" of at most {bins}" if bins is not None else ""
        raise InputError(f"--tss-bins {width}: a window is an odd number of bins{limit} (1, 3, 5, ...), "
                         f"centred on the TSS bin")
    return width


def nanmean(values) -> float:
    """Mean of the finite values; NaN, without numpy's warning, when there are none."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def pearson_columns(x: np.ndarray, y: np.ndarray, axis: int = 0) -> np.ndarray:
    """Pearson R between matching columns (axis=0) or rows (axis=1) of `x` and `y` (NaN if constant)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc, yc = x - x.mean(axis, keepdims=True), y - y.mean(axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis) / np.sqrt((xc * xc).sum(axis) * (yc * yc).sum(axis))


def spearman_columns(x: np.ndarray, y: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Spearman R between matching columns of `[N, T]` `x` and `y`, `chunk` tracks at a time.

    Ranks and their centred copies exist for one chunk only, so the memory beyond the
    inputs is ~`4 N chunk` float64 values, whatever T (the human head: T = 5313).
    """
    from scipy.stats import rankdata

    out = np.empty(x.shape[1])
    for lo in range(0, x.shape[1], chunk):
        cols = slice(lo, lo + chunk)
        out[cols] = pearson_columns(rankdata(x[:, cols], axis=0), rankdata(y[:, cols], axis=0))
    return out


def log1p_clipped(x: np.ndarray) -> np.ndarray:
    """log(x + 1) of the non-negative part: the scale the seed correlates expression on."""
    return np.log1p(np.maximum(x, 0))


def standardize(x: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> np.ndarray:
    """(x - mean) / std per column; columns with std 0 become 0."""
    mean = x.mean(axis=0) if mean is None else mean
    std = x.std(axis=0) if std is None else std
    return (x - mean) / np.where(std > 0, std, 1.0)


def write_tsv(path: str, header: list[str], rows) -> str:
    """A tab-separated table, written to a temporary name and renamed when complete."""
    with atomic_open(path) as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(_fmt(v) for v in row) + "\n")
    return path


def read_tsv(path: str, required: tuple[str, ...] = ()) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a tab-separated table with a header line; InputError for missing columns and for
    a row whose field count is not the header's (its values would land in other columns)."""
    with open(path) as f:
        lines = [(n, line.rstrip("\n").split("\t")) for n, line in enumerate(f, 1)
                 if line.strip() and not line.startswith("#")]
    if not lines:
        raise InputError(f"{path} is empty")
    header = lines[0][1]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path} lacks the column(s) {missing}; its header is {header}")
    for n, row in lines[1:]:
        if len(row) != len(header):
            raise InputError(f"{path} line {n}: {len(row)} tab-separated fields, the header has {len(header)}")
    return header, [row for _, row in lines[1:]]


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{v:.8g}"
    return str(v)


def histogram(values: np.ndarray, path: str, xlabel: str, title: str = "") -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    ax.hist(v, bins=30)
    if len(v):  # the mean in the title, not a legend: a legend box hides bars
        ax.axvline(np.mean(v), color="k", linestyle="--")
        title = f"{title}\nmean {np.mean(v):.3f} (dashed line), n = {len(v)}".strip()
    ax.set(xlabel=xlabel, ylabel="count", title=title)
    return save_png(fig, path)


def scatter(x: np.ndarray, y: np.ndarray, path: str, xlabel: str, ylabel: str, title: str = "",
            max_points: int = 20_000) -> str:
    plt = pyplot()
    x, y = np.ravel(x), np.ravel(y)
    if len(x) > max_points:  # a fixed subsample keeps the PNG readable
        keep = np.random.default_rng(0).choice(len(x), max_points, replace=False)
        x, y = x[keep], y[keep]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x, y, s=3, alpha=0.3)
    r = pearson_columns(x[:, None], y[:, None])[0] if len(x) > 1 else float("nan")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title} (R = {r:.3f})".strip())
    return save_png(fig, path)
