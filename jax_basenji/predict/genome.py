"""`predict genome`: whole chromosomes tiled by windows whose output bins abut, into one bigWig per track.

  DIR/{track}.bw          every listed chromosome at the model's bin resolution
  DIR/{track}.bedGraph    the same, with --bedgraph
  DIR/.partial/           while running: {k}.f32 (track k's values, float32, in tiling order) and progress.json

Predictions are gathered in memory in blocks of windows (at most BLOCK_BYTES) and each
block is appended to one raw file per track, so each track's values lie contiguous on
disk: its bigWig reads them once, in order. A track's raw file is removed as soon as its
bigWig is in place, so the disk holds at most the raw values (4 bytes per bin and track:
human hg38 at 128 bp, ~24.1 M bins, ~97 MB per track) plus the finished bigWigs that
replace them. progress.json (written atomically once a block is on disk) records the
windows done: `--resume` after a kill truncates the raw files to it, continues with the
same settings, and writes the same files, also when the kill came while the bigWigs were
being written.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
from tqdm import tqdm

from jax_basenji.data.genome import Genome
from jax_basenji.errors import InputError
from jax_basenji.predict.bigwig import write_bedgraph, write_bigwig
from jax_basenji.geometry import Geometry, tile
from jax_basenji.predict.windows import window_batches
from jax_basenji.resume import items_done, record_done, refuse_existing


# Memory for one block of predictions before it goes to the per-track files: large blocks keep the
# appends long (one open/write/close per track per block) while memory stays bounded.
BLOCK_BYTES = 256 << 20


def predict_genome(predictor, genome: Genome, chroms: list[str], out_dir: str, *, geo: Geometry,
                   columns: list[int], names: list[str], settings: dict, batch_size: int, resume: bool,
                   overwrite: bool, bedgraph: bool = False, progress: bool = True) -> list[str]:
    """Tile `chroms`, predict the `columns` of the head, write DIR/{name}.bw (and .bedGraph); returns the paths.

    `settings` (checkpoint, head, ensemble, n_value ...) must equal a resumed run's."""
    missing = [c for c in chroms if c not in genome]
    if missing:
        raise InputError(f"chromosome {missing[0]!r} is not in {genome.path}")
    exts = ("bw", "bedGraph") if bedgraph else ("bw",)
    outputs = [os.path.join(out_dir, f"{n}.{ext}") for n in names for ext in exts]
    partial = os.path.join(out_dir, ".partial")
    refuse_existing(outputs, partial, overwrite, resume)
    sizes = [(c, genome.chrom_length(c)) for c in chroms]
    windows = [w for c, n in sizes for w in tile(c, n, geo)]
    record = {**settings, "chroms": sizes, "columns": columns, "windows": len(windows), "batch_size": batch_size}
    done = items_done(partial, record, resume)
    os.makedirs(partial, exist_ok=True)
    raw = [os.path.join(partial, f"{k}.f32") for k in range(len(names))]
    if done < len(windows):
        _predict(predictor, genome, windows, done, geo, columns, raw, partial, record, batch_size, progress)
    os.makedirs(out_dir, exist_ok=True)
    entries = [(w.chrom, geo.bin_start(w.start), geo.bins) for w in windows]
    for path, name in zip(raw, names):
        if os.path.exists(path):  # else its files were written before a kill
            _write_track(path, name, out_dir, sizes, entries, geo, bedgraph)
    shutil.rmtree(partial)
    return outputs


def _predict(predictor, genome: Genome, windows: list, done: int, geo: Geometry, columns: list[int],
             raw: list[str], partial: str, record: dict, batch_size: int, progress: bool) -> None:
    """Windows from `done` on, a block at a time into the per-track files `raw` (cut back to `done`
    windows first: bytes past the record came from a block it never claimed)."""
    for path in raw:
        with open(path, "ab") as f:
            f.truncate(done * geo.bins * 4)
    per_window = geo.bins * len(columns) * 4
    block = max(1, BLOCK_BYTES // (per_window * batch_size)) * batch_size  # windows per block
    buffer = np.empty((block * geo.bins, len(columns)), np.float32)
    filled, first_of_block = 0, done
    bar = tqdm(total=len(windows), initial=done, unit="window", disable=not progress, file=sys.stderr,
               desc="genome")
    for first, batch in window_batches(genome, windows[done:], geo.length, batch_size):
        out = predictor(batch)[: len(windows) - done - first][..., columns]
        buffer[filled * geo.bins:(filled + len(out)) * geo.bins] = out.reshape(-1, len(columns))
        filled += len(out)
        if filled + batch_size > block or first_of_block + filled == len(windows):
            _append(raw, buffer[:filled * geo.bins])
            first_of_block += filled
            filled = 0
            record_done(partial, record, first_of_block)
        bar.update(len(out))
    bar.close()


def _append(raw: list[str], block: np.ndarray) -> None:
    """Column k of `block` `[bins, tracks]` onto the end of raw[k], on disk before the progress record."""
    for k, path in enumerate(raw):
        with open(path, "ab") as f:
            f.write(np.ascontiguousarray(block[:, k]).tobytes())
            f.flush()
            os.fsync(f.fileno())


def _write_track(path: str, name: str, out_dir: str, sizes: list[tuple[str, int]], entries: list,
                 geo: Geometry, bedgraph: bool) -> None:
    """DIR/{name}.bw (and .bedGraph) from one track's raw values, one entry per window in tiling order
    (which is header order); then the raw file goes."""
    values_of = np.memmap(path, np.float32, mode="r")

    def values(k: int) -> np.ndarray:
        return values_of[k * geo.bins:(k + 1) * geo.bins]

    write_bigwig(os.path.join(out_dir, f"{name}.bw"), sizes, entries, values, geo.pool)  # overwrite: ours
    if bedgraph:
        write_bedgraph(os.path.join(out_dir, f"{name}.bedGraph"), sizes, entries, values, geo.pool)
    del values_of
    os.remove(path)
