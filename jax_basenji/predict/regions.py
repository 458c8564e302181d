"""`predict regions`: predictions for BED regions, each centred in an input window, into HDF5.

  OUT.h5  preds          [regions, bins, tracks] (or [regions, tracks] with --sum), float32
                         (float16 with --float16); with --embed: the layer's activations
          chrom, start, end, name     the BED rows
          target_ids, target_labels   the selected tracks' identifiers and descriptions
          bin_start      [regions] genome position of the first written bin's start

Rows go to disk as each batch completes (memory holds one batch), in
OUT.h5.partial/ with a progress record: `--resume` after a kill continues there
with the same settings and writes the same file. OUT.h5 is written from them
under a temporary name, renamed when complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys

import numpy as np
from tqdm import tqdm

from jax_basenji.atomic import atomic_path
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import bed_lines
from jax_basenji.errors import InputError
from jax_basenji.geometry import Geometry, Window, centred_window
from jax_basenji.predict.core import batch_for
from jax_basenji.predict.windows import window_batches
from jax_basenji.resume import Run, refuse_existing


@dataclasses.dataclass(frozen=True)
class BedRegion:
    chrom: str
    start: int
    end: int
    name: str


def read_regions(path: str) -> list[BedRegion]:
    """BED rows `chrom start end [name ...]`; one-line errors name the line."""
    regions = []
    for line_no, fields in bed_lines(path, InputError):
        try:
            start, end = int(fields[1]), int(fields[2])
        except (IndexError, ValueError):
            raise InputError(f"{path}:{line_no}: expected 'chrom start end [name]' separated by tabs, "
                             f"got {chr(9).join(fields)!r}") from None
        if not 0 <= start < end:
            raise InputError(f"{path}:{line_no}: start {start} and end {end} are not 0 <= start < end")
        regions.append(BedRegion(fields[0], start, end, fields[3] if len(fields) > 3 else f"{fields[0]}:{start}-{end}"))
    if not regions:
        raise InputError(f"{path} holds no regions")
    return regions


def check_chromosomes(regions: list[BedRegion], genome: Genome, bed_path: str) -> None:
    missing = sorted({r.chrom for r in regions if r.chrom not in genome})
    if missing:
        raise InputError(f"{bed_path}: chromosome {missing[0]!r} is not in {genome.path}")


def warn_past_end(regions: list[BedRegion], genome: Genome, bed_path: str) -> None:
    """One `warning:` line on stderr if regions run past their chromosome's end (predicted with N
    there, all N for a region wholly past it): a BED of another assembly, most likely."""
    past = [r for r in regions if r.end > genome.chrom_length(r.chrom)]
    if past:
        r = past[0]
        print(f"warning: {len(past)} region(s) of {bed_path} run past their chromosome's end and are predicted "
              f"with N there (first: {r.name}, {r.chrom}:{r.start}-{r.end}; {r.chrom} is "
              f"{genome.chrom_length(r.chrom)} bp)", file=sys.stderr)


def predict_regions(predictor, genome: Genome, regions: list[BedRegion], output: str, *, geo: Geometry,
                    columns: list[int] | None, target_ids: list[str], target_labels: list[str],
                    site: slice, total: bool, float16: bool, batch_size: int, settings: dict, resume: bool,
                    overwrite: bool, progress: bool = True) -> Run:
    """Write OUT.h5 (see the module docstring). Rows go to OUT.h5.partial/ as batches complete;
    `settings` (checkpoint, head, ensemble, N value ...) must equal a resumed run's. Returns the run:
    the caller `finish`es it once everything made from OUT.h5 is written."""
    partial = partial_dir(output)
    refuse_existing([output], partial, overwrite, resume)
    windows: list[Window] = [centred_window(r.chrom, r.start, r.end, geo.length) for r in regions]
    n_bins = site.stop - site.start
    width = len(columns) if columns is not None else len(target_ids)
    shape = (len(regions), width) if total else (len(regions), n_bins, width)
    dtype = np.float16 if float16 else np.float32
    record = {**settings, "regions": _fingerprint(regions), "site": [site.start, site.stop],
              "columns": columns, "sum": total, "float16": float16, "batch_size": batch_size, "shape": list(shape)}
    run = Run(partial, record, resume)
    batch_size = batch_for(batch_size, len(regions))
    done = run.done()
    preds = run.rows(shape, dtype, done)
    bar = tqdm(total=len(regions), initial=done, unit="region", disable=not progress, file=sys.stderr,
               desc="regions")
    for first, batch in window_batches(genome, windows[done:], geo.length, batch_size):
        first += done
        out = predictor(batch)[: len(windows) - first, site]
        if columns is not None:
            out = out[..., columns]
        preds[first:first + len(out)] = (out.sum(axis=1) if total else out).astype(dtype)
        run.save(preds, first + len(out))
        bar.update(len(out))
    bar.close()
    _write_h5(output, preds, regions, [geo.bin_start(w.start, site.start) for w in windows], target_ids,
              target_labels, geo.pool, total)
    return run


def partial_dir(output: str) -> str:
    """Where a `predict regions` run writing `output` keeps its rows and progress until it is done."""
    return output + ".partial"


def _fingerprint(regions: list[BedRegion]) -> str:
    """The regions' count and a digest of their rows: a resume must predict the same BED."""
    digest = hashlib.sha256("\n".join(f"{r.chrom}\t{r.start}\t{r.end}\t{r.name}" for r in regions).encode())
    return f"{len(regions)} regions, sha256 {digest.hexdigest()[:16]}"


def _write_h5(output: str, preds: np.ndarray, regions: list[BedRegion], bin_starts: list[int],
              target_ids: list[str], target_labels: list[str], pool: int, total: bool) -> None:
    """OUT.h5 from the finished rows, copied in slices (memory holds one slice)."""
    import h5py

    with atomic_path(output) as tmp, h5py.File(tmp, "w") as h5:
        out = h5.create_dataset("preds", shape=preds.shape, dtype=preds.dtype,
                                chunks=(1, *preds.shape[1:]) if preds.ndim == 3 else None)
        step = max(1, (64 << 20) // max(1, preds[:1].nbytes))  # ~64 MB per copy
        for k in range(0, len(preds), step):
            out[k:k + step] = preds[k:k + step]
        strings = h5py.string_dtype()
        h5.create_dataset("chrom", data=np.array([r.chrom for r in regions], dtype=object), dtype=strings)
        h5.create_dataset("start", data=np.array([r.start for r in regions], np.int64))
        h5.create_dataset("end", data=np.array([r.end for r in regions], np.int64))
        h5.create_dataset("name", data=np.array([r.name for r in regions], dtype=object), dtype=strings)
        h5.create_dataset("bin_start", data=np.array(bin_starts, np.int64))
        h5.create_dataset("target_ids", data=np.array(target_ids, dtype=object), dtype=strings)
        h5.create_dataset("target_labels", data=np.array(target_labels, dtype=object), dtype=strings)
        h5.attrs["pool_width"] = pool
        h5.attrs["summed_over_bins"] = bool(total)


def bigwig_entries(regions: list[BedRegion], bin_starts: np.ndarray, n_bins: int, pool: int,
                   bed_path: str) -> list[tuple[str, int, int]]:
    """(chrom, first bin start, bins) per region for bigWig writing; regions must be sorted and their
    written bins must not overlap (a bigWig holds one value per position: averaging would hide it)."""
    out, last = [], {}
    chroms_seen: list[str] = []
    for r, b in zip(regions, bin_starts):
        if chroms_seen and chroms_seen[-1] != r.chrom and r.chrom in last:
            raise InputError(f"{bed_path}: {r.chrom} appears in separate blocks; sort the BED "
                             "(sort -k1,1 -k2,2n) for --bigwig-tracks")
        if r.chrom in last and b < last[r.chrom]:
            raise InputError(f"{bed_path}: region {r.name} ({r.chrom}:{r.start}-{r.end}) overlaps the bins of the "
                             "region before it or is out of order; --bigwig-tracks needs sorted regions whose "
                             "predicted bins do not overlap (use --site-length to write fewer bins)")
        if not chroms_seen or chroms_seen[-1] != r.chrom:
            chroms_seen.append(r.chrom)
        last[r.chrom] = int(b) + n_bins * pool
        out.append((r.chrom, int(b), n_bins))
    return out


def bigwig_path(h5_path: str, track: str) -> str:
    """OUT.{track}.bw beside OUT.h5: a prediction never takes the name of a measured `{track}.bw` (a
    fine-tuned head's track ids are its input bigWigs' names)."""
    return f"{os.path.splitext(h5_path)[0]}.{track}.bw"


def regions_to_bigwigs(h5_path: str, regions: list[BedRegion], genome: Genome, names: list[str],
                       columns: list[int], bed_path: str, overwrite: bool) -> list[str]:
    """One bigWig per selected column of OUT.h5's `preds` (bins kept, not summed): OUT.{name}.bw."""
    import h5py

    from jax_basenji.predict.bigwig import write_bigwig

    with h5py.File(h5_path, "r") as h5:
        preds, bin_starts, pool = h5["preds"], h5["bin_start"][:], int(h5.attrs["pool_width"])
        entries = bigwig_entries(regions, bin_starts, preds.shape[1], pool, bed_path)
        # Chromosomes in the FASTA's order, as every other bigWig of the genome (and `predict genome`)
        # has them, whatever order the BED's blocks come in; entries follow the header.
        rank = {c: i for i, c in enumerate(genome.chromosomes())}
        order = sorted(range(len(entries)), key=lambda k: (rank[entries[k][0]], entries[k][1]))
        entries = [entries[k] for k in order]
        chroms = list(dict.fromkeys(chrom for chrom, _, _ in entries))
        paths = []
        for name, col in zip(names, columns):
            def values(j: int, col=col) -> np.ndarray:
                return preds[order[j], :, col]

            path = bigwig_path(h5_path, name)
            write_bigwig(path, [(c, genome.chrom_length(c)) for c in chroms], entries, values, pool, overwrite)
            paths.append(path)
    return paths
