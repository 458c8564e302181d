"""The outputs of `variants score` / `variants merge`, laid out like upstream basenji's `sad.h5`.

  OUT.h5   snp, chr, ref_allele, alt_allele   [variants] byte strings, the VCF's orientation (as upstream)
           pos                                [variants] uint32 (as upstream)
           target_ids, target_labels          [tracks] byte strings (as upstream)
           SAD, D2, SAR, REF_SUM, ALT_SUM     [variants, tracks] (those computed) float16, clipped to its
                                              range first as upstream does (float32 with --float32)
           <STAT>_pct, percentiles            [tracks, 279] each statistic's percentiles per track on
                                              upstream's grid (0.001 steps below 0.1 and above 0.9, else 0.01)
           flipped                            [variants] bool: the genome carried an ALT; REF was put back
           attrs["jax_basenji"]               JSON: the run's settings and rows (what `merge` checks)
  OUT.tsv  one row per variant: its largest |SAD| track and value
  OUT.png  the variants with the largest |SAD|
Everything is written and read in row chunks (bounded memory whatever the variant count), the
statistics as HDF5 chunks of rows x 64 tracks so a block of tracks reads without the rest; each
file under a temporary name, renamed when complete.
"""

from __future__ import annotations

import heapq
import json
from typing import Iterable, Iterator

import numpy as np

from jax_basenji.atomic import atomic_open, atomic_path
from jax_basenji.errors import InputError
from jax_basenji.metrics import pyplot, save_png

PERCENTILES = np.concatenate([np.arange(0.001, 0.1, 0.001), np.arange(0.1, 0.9, 0.01), np.arange(0.9, 1, 0.001)])
ROWS = 4096  # rows per chunk read or written
STRINGS = ("snp", "chr", "ref_allele", "alt_allele")
PCT_BLOCK_BYTES = 256 << 20  # statistic values held at once while taking percentiles


def to_stored(values: np.ndarray, float32: bool) -> np.ndarray:
    """float32, or float16 clipped to its finite range (a sum of 71,680 stays 65,504, not inf)."""
    if float32:
        return values.astype(np.float32)
    f16 = np.finfo(np.float16)
    return np.clip(values, f16.min, f16.max).astype(np.float16)


def write_h5(path: str, chunks: Iterable[dict[str, np.ndarray]], *, rows: int, widths: dict[str, int],
             stats: list[str], target_ids: list[str], target_labels: list[str], float32: bool,
             settings: dict) -> str:
    """Stream `chunks` ({snp, chr, pos, ref_allele, alt_allele, flipped, <stat>...}, `rows` in all) into `path`."""
    import h5py

    tracks = len(target_ids)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for name in STRINGS:
            h5.create_dataset(name, shape=(rows,), dtype=f"S{max(1, widths[name])}")
        h5.create_dataset("pos", shape=(rows,), dtype=np.uint32)
        h5.create_dataset("flipped", shape=(rows,), dtype=bool)
        h5.create_dataset("target_ids", data=np.array(target_ids, "S"))
        h5.create_dataset("target_labels", data=np.array(target_labels, "S"))
        dtype = np.float32 if float32 else np.float16
        for stat in stats:
            h5.create_dataset(stat, shape=(rows, tracks), dtype=dtype,
                              chunks=(min(rows, ROWS), min(tracks, 64)) if rows and tracks else None)
        lo = 0
        for chunk in chunks:
            hi = lo + len(chunk["pos"])
            for name in (*STRINGS, "pos", "flipped"):
                h5[name][lo:hi] = chunk[name]
            for stat in stats:
                h5[stat][lo:hi] = to_stored(chunk[stat], float32)
            lo = hi
        if lo != rows:  # the VCF changed between scoring and writing
            raise InputError(f"{path}: {lo} rows to write where {rows} were scored; was the input changed?")
        write_percentiles(h5, stats)
        h5.attrs["jax_basenji"] = json.dumps(settings)
    return path


def write_percentiles(h5, stats: list[str]) -> None:
    """`percentiles` and `<stat>_pct` `[tracks, percentiles]`, as upstream computes them from the stored
    values, a block of tracks at a time."""
    h5.create_dataset("percentiles", data=PERCENTILES)
    for stat in stats:
        data = h5[stat]
        rows, tracks = data.shape
        block = max(1, PCT_BLOCK_BYTES // max(1, rows * data.dtype.itemsize))
        out = h5.create_dataset(f"{stat}_pct", shape=(tracks, len(PERCENTILES)), dtype=data.dtype,
                                fillvalue=np.nan)  # no rows (an empty shard): no percentiles
        for c in range(0, tracks if rows else 0, block):
            values = data[:, c:c + block]
            out[c:c + values.shape[1]] = np.percentile(values, 100 * PERCENTILES, axis=0).T.astype(data.dtype)


def read_chunks(h5, fields: Iterable[str]) -> Iterator[dict[str, np.ndarray]]:
    """{field: rows} of an open sad.h5, `ROWS` rows at a time."""
    fields = list(fields)
    for lo in range(0, len(h5["pos"]), ROWS):
        yield {f: h5[f][lo:lo + ROWS] for f in fields}


def row_maxima(h5, stat: str) -> tuple[np.ndarray, np.ndarray]:
    """(`[variants]` track of each row's largest |stat|, `[variants]` its value), read in chunks."""
    where, value = [], []
    for chunk in read_chunks(h5, [stat]):
        values = chunk[stat].astype(np.float32)
        t = np.abs(values).argmax(axis=1) if values.shape[1] else np.zeros(len(values), int)
        where.append(t)
        value.append(values[np.arange(len(values)), t] if values.shape[1] else np.zeros(len(values)))
    empty = np.zeros(0)
    return (np.concatenate(where) if where else empty.astype(int)), (np.concatenate(value) if value else empty)


def write_summary(path: str, h5_path: str, stat: str) -> str:
    """OUT.tsv: one row per variant, the track of its largest |`stat`| and that value (as stored)."""
    import h5py

    with h5py.File(h5_path, "r") as h5, atomic_open(path) as f:
        ids = [t.decode() for t in h5["target_ids"][:]]
        track, value = row_maxima(h5, stat)
        f.write("\t".join(["snp", "chr", "pos", "ref_allele", "alt_allele", "flipped",
                           f"max_abs_{stat.lower()}_track", stat.lower()]) + "\n")
        lo = 0
        for c in read_chunks(h5, (*STRINGS, "pos", "flipped")):
            for k in range(len(c["pos"])):
                snp, chrom, ref, alt = (c[name][k].decode() for name in STRINGS)
                f.write(f"{snp}\t{chrom}\t{c['pos'][k]}\t{ref}\t{alt}\t{int(c['flipped'][k])}\t"
                        f"{ids[track[lo + k]]}\t{value[lo + k]:.6g}\n")
            lo += len(c["pos"])
    return path


def plot_top(path: str, h5_path: str, stat: str, top: int = 20) -> str:
    """OUT.png: horizontal bars, the `top` variants by max |`stat`| over tracks, labelled with their track."""
    import h5py

    with h5py.File(h5_path, "r") as h5:
        ids = [t.decode() for t in h5["target_ids"][:]]
        track, value = row_maxima(h5, stat)
        order = heapq.nlargest(top, range(len(value)), key=lambda k: abs(value[k]))[::-1]
        names = [h5["snp"][k].decode() for k in order]
    shown = [float(value[k]) for k in order]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(order) + 1.2))
    ax.barh(range(len(order)), shown, color=["tab:red" if x > 0 else "tab:blue" for x in shown])
    ax.set_yticks(range(len(order)), [f"{n} ({ids[track[k]]})" for n, k in zip(names, order)], fontsize=7)
    ax.axvline(0, color="k", linewidth=0.5)
    ax.set(xlabel=f"{stat} of the variant's largest |{stat}| track (summed over bins)",
           title=f"top {len(order)} variants by max |{stat}|")
    return save_png(fig, path)
