"""Basenji-layout data sets for new assays, binned from bigWig files.

  python -m jax_basenji.data tracks --regions sequences.bed --bigwig atac/*.bw --bigwig rna/*.bw \\
      --fasta mm10.fa --output DIR [--species mouse] [--sum-stat sum] [--clip X] [--scale Y]

For each BED region (`chrom start end subset`, all of the model's input
length), every bigWig is summed (or averaged) over 128 bp bins of the central
`target_length` bins (the region minus `crop_bp` per side, as in Basenji2),
then clipped and scaled as the `clip` / `scale` columns of targets.txt say.
The output is `DIR/<species>/` in the Basenji2 layout (statistics.json,
sequences.bed, targets.txt, tfrecords/) that `python -m jax_basenji.data
convert` reads. A bigWig that lacks a chromosome, or a region running past a
chromosome end, contributes zeros there, with one warning per track and chromosome.

Each `--bigwig` group is one assay (ATAC, RNA, ...): named by `--assay`, else
by the files' directory. Track identifiers are the file names without
extension; a `--samples` sheet (TSV with a header: `file` and any of
`identifier`, `description`, `assay`, `clip`, `scale`, `sum_stat`) sets them per file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings

import numpy as np
from tqdm import tqdm

from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import (SUBSETS, DataError, Region, read_bed_file, read_targets_file,
                                     write_targets_file)
from jax_basenji.data.tfrecord import serialize_bytes_features, write_records

FLOAT16_MAX = 65504.0


@dataclasses.dataclass(frozen=True)
class Track:
    """One output channel: a bigWig and how its bins are summarised."""

    file: str
    identifier: str
    assay: str
    sum_stat: str = "sum"  # "sum" or "mean" of the per-bp values in a bin
    clip: float | None = None  # upper bound per bin, applied before scale
    scale: float = 1.0

    @property
    def description(self) -> str:
        return f"{self.assay}:{self.identifier}"


def tracks_from_groups(groups: list[list[str]], assays: list[str] | None = None, *, sum_stat: str = "sum",
                       clip: float | None = None, scale: float = 1.0) -> list[Track]:
    """`--bigwig` groups -> tracks; a group's assay is `assays[i]` or its first file's directory name."""
    if assays and len(assays) != len(groups):
        raise DataError(f"--assay names {len(assays)} assays for {len(groups)} --bigwig groups")
    tracks = []
    for i, files in enumerate(groups):
        assay = assays[i] if assays else os.path.basename(os.path.dirname(os.path.abspath(files[0])))
        tracks += [Track(f, file_stem(f), assay.upper(), sum_stat, clip, scale) for f in files]
    return tracks


def tracks_from_sheet(path: str, *, sum_stat: str = "sum", clip: float | None = None,
                      scale: float = 1.0) -> list[Track]:
    """A sample sheet (TSV with header; `file` required, relative to the sheet) -> tracks."""
    rows = read_targets_file(path)
    if rows and "file" not in rows[0]:
        raise DataError(f"{path}: the sample sheet needs a 'file' column; header is {list(rows[0])}")
    tracks = []
    for line_no, row in enumerate(rows, 2):
        file = os.path.join(os.path.dirname(os.path.abspath(path)), row["file"])
        try:
            tracks.append(Track(
                file, row.get("identifier") or file_stem(file),
                (row.get("assay") or row.get("description", "").split(":")[0] or "UNKNOWN").upper(),
                row.get("sum_stat") or sum_stat,
                float(row["clip"]) if row.get("clip") else clip,
                float(row["scale"]) if row.get("scale") else scale))
        except ValueError as e:
            raise DataError(f"{path}:{line_no}: {e}") from None
    return tracks


def file_stem(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".bigWig", ".bigwig", ".bw"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


class BigWigBinner:
    """Per-bin sums or means of one bigWig; zeros (and one warning) where it has no data."""

    def __init__(self, track: Track, pool_width: int):
        import pyBigWig

        if track.sum_stat not in ("sum", "mean"):
            raise DataError(f"{track.file}: sum_stat must be sum or mean, got {track.sum_stat!r}")
        if not os.path.exists(track.file):
            raise DataError(f"{track.file}: bigWig file is missing")
        try:
            self.bw = pyBigWig.open(track.file)
        except RuntimeError:
            self.bw = None
        if self.bw is None or not self.bw.isBigWig():
            raise DataError(f"{track.file} is not a readable bigWig file")
        self.track, self.pool = track, pool_width
        self.chroms = self.bw.chroms()
        self._warned: set[str] = set()

    def _warn(self, chrom: str, what: str) -> None:
        if chrom not in self._warned:
            self._warned.add(chrom)
            warnings.warn(f"{self.track.file}: {what}; those bins are zeros", stacklevel=3)

    def bins(self, chrom: str, start: int, end: int) -> np.ndarray:
        """`[(end - start) // pool]` float32 for chrom:[start, end)."""
        values = np.zeros(end - start, np.float32)
        size = self.chroms.get(chrom)
        if size is None:
            self._warn(chrom, f"no chromosome {chrom!r}")
        else:
            lo, hi = max(start, 0), min(end, size)
            if (lo, hi) != (start, end):
                self._warn(chrom, f"{chrom}:{start}-{end} runs past the chromosome (length {size})")
            if lo < hi:
                try:
                    got = self.bw.values(chrom, lo, hi, numpy=True)
                except RuntimeError as e:  # pyBigWig's only error: a damaged data block
                    raise DataError(f"{self.track.file}: {chrom}:{lo}-{hi} could not be read (damaged bigWig?): "
                                    f"{e}") from None
                values[lo - start: hi - start] = np.nan_to_num(got)
        per_bin = values.reshape(-1, self.pool)
        out = per_bin.sum(axis=1) if self.track.sum_stat == "sum" else per_bin.mean(axis=1)
        if self.track.clip is not None:
            out = np.minimum(out, self.track.clip)
        return out * self.track.scale


def build_tracks(regions_path: str, tracks: list[Track], fasta: str, output: str, *, species: str = "mouse",
                 crop_bp: int | None = None, pool_width: int = 128, records_per_file: int = 64,
                 overwrite: bool = False, progress: bool = True) -> str:
    """Write `output/<species>/` in the Basenji2 layout; returns that directory."""
    regions = read_bed_file(regions_path)
    if not regions:
        raise DataError(f"{regions_path} has no regions")
    if not tracks:
        raise DataError("no bigWig tracks given")
    lengths = {r.end - r.start for r in regions}
    if len(lengths) != 1:
        raise DataError(f"{regions_path}: regions must all have the model's input length; found {sorted(lengths)[:5]}")
    seq_length = lengths.pop()
    crop = seq_length // 16 if crop_bp is None else crop_bp  # Basenji2: 8192 of 131072
    if (seq_length - 2 * crop) <= 0 or (seq_length - 2 * crop) % pool_width:
        raise DataError(f"{seq_length} bp minus 2 x {crop} bp crop is not a positive multiple of {pool_width} bp")
    bad = [r for r in regions if r.subset not in SUBSETS]
    if bad:
        raise DataError(f"{regions_path}: subset {bad[0].subset!r} of {bad[0].chrom}:{bad[0].start} "
                        f"is not one of {SUBSETS}")
    genome = Genome(fasta)
    missing = sorted({r.chrom for r in regions if r.chrom not in genome})  # fail before any work
    if missing:
        raise DataError(f"{regions_path}: chromosome {missing[0]!r} is not in {genome.path} "
                        f"(as listed by {genome.path}.fai)")
    binners = [BigWigBinner(t, pool_width) for t in tracks]

    final = os.path.join(output, species)
    if os.path.exists(final) and not overwrite:
        raise DataError(f"{final} exists; pass --overwrite to replace it")
    work = final + ".partial"
    shutil.rmtree(work, ignore_errors=True)
    try:
        _write_layout(work, regions, tracks, binners, genome, species, seq_length, crop, pool_width,
                      records_per_file, progress)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # a failed run leaves nothing behind
        raise
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(work, final)
    return final


def _write_layout(work: str, regions: list[Region], tracks: list[Track], binners: list, genome: Genome,
                  species: str, seq_length: int, crop: int, pool_width: int, records_per_file: int,
                  progress: bool) -> None:
    """The Basenji2 layout of `regions` x `tracks` into directory `work`."""
    os.makedirs(os.path.join(work, "tfrecords"))

    def example(r: Region) -> bytes:
        target = np.stack([b.bins(r.chrom, r.start + crop, r.end - crop) for b in binners], axis=1)
        if target.max(initial=0) > FLOAT16_MAX:
            warnings.warn(f"{r.chrom}:{r.start}-{r.end}: bins above {FLOAT16_MAX:g} clipped to fit float16 "
                          "(consider --clip or --scale)", stacklevel=2)
        target = np.clip(target, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)
        return serialize_bytes_features({"sequence": genome.fetch(r.chrom, r.start, r.end).tobytes(),
                                         "target": target.tobytes()})

    bar = tqdm(total=len(regions), desc=f"tracks {species}", unit="region", disable=not progress)
    for subset in SUBSETS:
        rows = [r for r in regions if r.subset == subset]
        for k in range(0, len(rows), records_per_file):
            chunk = rows[k:k + records_per_file]
            write_records(os.path.join(work, "tfrecords", f"{subset}-{k // records_per_file}.tfr"),
                          (example(r) for r in chunk))
            bar.update(len(chunk))
    bar.close()
    with open(os.path.join(work, "sequences.bed"), "w") as f:
        f.writelines(f"{r.chrom}\t{r.start}\t{r.end}\t{r.subset}\n" for r in regions)
    write_targets_file(os.path.join(work, "targets.txt"), [
        {"identifier": t.identifier, "file": os.path.abspath(t.file), "clip": "" if t.clip is None else t.clip,
         "scale": t.scale, "sum_stat": t.sum_stat, "description": t.description} for t in tracks])
    target_length = (seq_length - 2 * crop) // pool_width
    stats = {"num_targets": len(tracks), "seq_length": seq_length, "pool_width": pool_width, "crop_bp": crop,
             "target_length": target_length, **{f"{s}_seqs": sum(r.subset == s for r in regions) for s in SUBSETS},
             "seq_1hot": True}
    with open(os.path.join(work, "statistics.json"), "w") as f:
        json.dump(stats, f, indent=2)
