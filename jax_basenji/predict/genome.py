"""`predict genome`: whole chromosomes tiled by windows whose output bins abut, into one bigWig per track.

  DIR/{track}.bw          every listed chromosome at the model's bin resolution
  DIR/{track}.bedGraph    the same, with --bedgraph
  DIR/.partial/           while running: preds.npy ([bins, tracks] float32 on disk) and progress.json

Predictions go to a memory-mapped file on disk batch by batch, so memory
holds one batch whatever the genome; progress.json (written atomically after
each batch's rows are flushed) records how many windows are done. `--resume`
after a kill continues from there with the same settings and writes the same
files; the track files are written from the finished array at the end.
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
from jax_basenji.predict.windows import Geometry, tile, window_batches
from jax_basenji.resume import items_done, record_done, refuse_existing


def predict_genome(predictor, genome: Genome, chroms: list[str], out_dir: str, *, geo: Geometry,
                   columns: list[int], names: list[str], settings: dict, batch_size: int, resume: bool,
                   overwrite: bool, bedgraph: bool = False, progress: bool = True) -> list[str]:
    """Tile `chroms`, predict the `columns` of the head, write DIR/{name}.bw (and .bedGraph); returns the paths.

    `settings` (checkpoint, head, ensemble, n_value ...) must equal a resumed run's."""
    missing = [c for c in chroms if c not in genome]
    if missing:
        raise InputError(f"chromosome {missing[0]!r} is not in {genome.path}")
    outputs = [os.path.join(out_dir, f"{n}.{ext}") for n in names for ext in (("bw", "bedGraph") if bedgraph
                                                                                else ("bw",))]
    partial = os.path.join(out_dir, ".partial")
    refuse_existing(outputs, partial, overwrite, resume)
    sizes = [(c, genome.chrom_length(c)) for c in chroms]
    windows = [w for c, n in sizes for w in tile(c, n, geo)]
    record = {"settings": settings, "chroms": sizes, "columns": columns, "windows": len(windows),
              "batch_size": batch_size}
    done = items_done(partial, record, resume)
    os.makedirs(partial, exist_ok=True)
    shape = (len(windows) * geo.bins, len(columns))
    preds = np.lib.format.open_memmap(os.path.join(partial, "preds.npy"), mode="r+" if done else "w+",
                                      dtype=np.float32, shape=shape)
    bar = tqdm(total=len(windows), initial=done, unit="window", disable=not progress, file=sys.stderr,
               desc="genome")
    for first, batch in window_batches(genome, windows[done:], geo.length, batch_size):
        out = predictor(batch)[: len(windows) - done - first][..., columns]
        rows = slice((done + first) * geo.bins, (done + first + len(out)) * geo.bins)
        preds[rows] = out.reshape(-1, len(columns))
        preds.flush()
        record_done(partial, record, done + first + len(out))
        bar.update(len(out))
    bar.close()
    del preds  # flushed; the track files read it back
    os.makedirs(out_dir, exist_ok=True)
    _write_tracks(os.path.join(partial, "preds.npy"), windows, sizes, geo, names, out_dir, bedgraph)
    shutil.rmtree(partial)
    return outputs


def _write_tracks(preds_path: str, windows: list, sizes: list[tuple[str, int]], geo: Geometry, names: list[str],
                  out_dir: str, bedgraph: bool) -> None:
    """DIR/{name}.bw (and .bedGraph) from the finished `[bins, tracks]` array, one entry per window in
    tiling order (which is header order): window k's bins start at its input start + crop."""
    preds = np.load(preds_path, mmap_mode="r")
    entries = [(w.chrom, w.start + geo.crop, geo.bins) for w in windows]
    for col, name in enumerate(names):
        def values(k: int, col=col) -> np.ndarray:
            return preds[k * geo.bins:(k + 1) * geo.bins, col]

        write_bigwig(os.path.join(out_dir, f"{name}.bw"), sizes, entries, values, geo.pool)  # overwrite: ours
        if bedgraph:
            write_bedgraph(os.path.join(out_dir, f"{name}.bedGraph"), sizes, entries, values, geo.pool)
