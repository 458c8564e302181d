"""The random-access store: Basenji TFRecords converted once into memory-mappable shards.

  STORE/{species}/meta.json                       statistics.json, targets.txt rows, strand pairs
  STORE/{species}/{subset}/{shard}.seq.u8         [n, seq_length] uint8 index (A0 C1 G2 T3 N4)
  STORE/{species}/{subset}/{shard}.tgt.f16        [n, target_length, num_targets] float16
  STORE/{species}/{subset}/{shard}.json           {"n": n} - written last: the shard is complete
  STORE/{species}/{subset}/index.json             shards in record order + the subset's BED rows

One shard per TFRecord file. A shard is written under temporary names and
renamed, its .json last, so an interrupted conversion never leaves a shard
that looks complete, and a re-run skips every finished shard. The raw files
are plain C-order arrays: reading an example is a memory-mapped slice.
Sequences are stored 4x smaller than one-hot; targets as the records' float16.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from typing import Sequence

import numpy as np
from tqdm import tqdm

from jax_basenji.atomic import write_json
from jax_basenji.data.layout import (SUBSETS, DataError, Region, Statistics, iter_file_examples,
                                     read_bed, read_targets, strand_pairs, tfrecord_files)

FORMAT = "jax_basenji.store/1"


def _convert_shard(tfr: str, out_dir: str, stats: Statistics, overwrite: bool = False) -> int:
    """Convert one TFRecord file; returns its record count (skips a finished shard)."""
    name = os.path.basename(tfr)[: -len(".tfr")]
    done = os.path.join(out_dir, name + ".json")
    source = _source_identity(tfr)
    if os.path.exists(done):
        with open(done) as f:
            finished = json.load(f)
        if finished.get("source") == source:
            return finished["n"]  # resumed: this shard is done, from this very file
        if not overwrite:
            raise DataError(f"{done} was converted from another input than {tfr} (path, size or modification "
                            "time differ); pass --overwrite to convert it again")
    seq_path, tgt_path = (os.path.join(out_dir, name + ext) for ext in (".seq.u8", ".tgt.f16"))
    n = 0
    with open(seq_path + ".tmp", "wb") as fs, open(tgt_path + ".tmp", "wb") as ft:
        for seq, tgt in iter_file_examples(tfr, stats):
            fs.write(seq.tobytes())
            ft.write(np.ascontiguousarray(tgt, np.float16).tobytes())
            n += 1
    os.replace(seq_path + ".tmp", seq_path)
    os.replace(tgt_path + ".tmp", tgt_path)
    write_json(done, {"n": n, "source": source})
    return n


def _source_identity(path: str) -> dict:
    """What tells an input file apart cheaply: its absolute path, size and modification time."""
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def convert_species(species_dir: str, out_dir: str, *, workers: int = 1, progress: bool = True,
                    overwrite: bool = False) -> dict[str, int]:
    """Convert every subset of one species directory; returns {subset: examples}.

    Finished shards are reused only if they came from the same input file; otherwise
    the conversion stops, naming the shard, unless `overwrite` (then they are redone).
    """
    stats = Statistics.read(species_dir)
    regions = read_bed(species_dir)
    targets = read_targets(species_dir)
    if len(targets) != stats.num_targets:
        raise DataError(f"{species_dir}/targets.txt has {len(targets)} rows; statistics.json "
                        f"says num_targets={stats.num_targets}")
    pairs = strand_pairs(targets)
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "meta.json"), {
        "format": FORMAT, "statistics": stats.raw, "targets": targets,
        "strand_pair": None if pairs is None else pairs.tolist(),
        "species_dir": os.path.abspath(species_dir)})
    counts = {}
    for subset in SUBSETS:
        files = tfrecord_files(species_dir, subset)
        bed = [r for r in regions if r.subset == subset]
        if not files and not bed and not stats.counts[subset]:
            continue
        subset_dir = os.path.join(out_dir, subset)
        os.makedirs(subset_dir, exist_ok=True)
        label = f"{os.path.basename(os.path.normpath(species_dir))}/{subset}"
        with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
            jobs = (pool.map if pool else map)(_convert_shard, files, [subset_dir] * len(files),
                                               [stats] * len(files), [overwrite] * len(files))
            shard_counts = list(tqdm(jobs, total=len(files), desc=label, unit="file", disable=not progress))
        total = sum(shard_counts)
        if total != stats.counts[subset]:
            raise DataError(f"{species_dir}: {subset} has {total} records in {len(files)} files; "
                            f"statistics.json says {subset}_seqs={stats.counts[subset]}")
        if total != len(bed):
            raise DataError(f"{species_dir}/sequences.bed has {len(bed)} {subset} rows; "
                            f"the records hold {total} examples")
        write_json(os.path.join(subset_dir, "index.json"), {
            "shards": [os.path.basename(f)[: -len(".tfr")] for f in files], "counts": shard_counts,
            "regions": [[r.chrom, r.start, r.end] for r in bed]})
        counts[subset] = total
    return counts


def species_dirs(basenji_dir: str, species: Sequence[str] | None) -> dict[str, str]:
    """{species: directory}; by default every subdirectory with a statistics.json."""
    if species:
        found = {s: os.path.join(basenji_dir, s) for s in species}
        for s, d in found.items():
            if not os.path.exists(os.path.join(d, "statistics.json")):
                raise DataError(f"{d}/statistics.json is missing: no species {s!r} in {basenji_dir}")
        return found
    found = {name: os.path.join(basenji_dir, name) for name in sorted(os.listdir(basenji_dir))
             if os.path.exists(os.path.join(basenji_dir, name, "statistics.json"))}
    if not found:
        raise DataError(f"{basenji_dir} holds no species directory (no */statistics.json)")
    return found


def convert(basenji_dir: str, store_dir: str, species: Sequence[str] | None = None, *,
            workers: int = 1, progress: bool = True, overwrite: bool = False) -> dict[str, dict[str, int]]:
    """`python -m jax_basenji.data convert`: every species and subset; resumable."""
    return {name: convert_species(d, os.path.join(store_dir, name), workers=workers, progress=progress,
                                  overwrite=overwrite)
            for name, d in species_dirs(basenji_dir, species).items()}


class StoreSubset:
    """Memory-mapped view of one converted subset: `[i] -> (index [L], target [bins, T])`."""

    def __init__(self, store_dir: str, species: str, subset: str):
        self.dir = os.path.join(store_dir, species, subset)
        index_path = os.path.join(self.dir, "index.json")
        meta_path = os.path.join(store_dir, species, "meta.json")
        if not os.path.exists(index_path) or not os.path.exists(meta_path):
            raise DataError(f"{self.dir} is not a converted subset (no index.json); "
                            f"run python -m jax_basenji.data convert")
        with open(meta_path) as f:
            self.meta = json.load(f)
        with open(index_path) as f:
            index = json.load(f)
        stats = self.meta["statistics"]
        self.seq_length = int(stats["seq_length"])
        self.target_shape = (int(stats["target_length"]), int(stats["num_targets"]))
        self.shards, self.counts = index["shards"], index["counts"]
        self.regions = [Region(c, s, e, subset) for c, s, e in index["regions"]]
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self._maps: dict[int, tuple[np.memmap, np.memmap]] = {}  # opened lazily, per process

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _shard(self, k: int):
        if k not in self._maps:
            n, base = self.counts[k], os.path.join(self.dir, self.shards[k])
            self._maps[k] = (np.memmap(base + ".seq.u8", np.uint8, "r", shape=(n, self.seq_length)),
                             np.memmap(base + ".tgt.f16", np.float16, "r", shape=(n, *self.target_shape)))
        return self._maps[k]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} out of range for {len(self)} examples")
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        seqs, tgts = self._shard(k)
        j = i - int(self.offsets[k])
        return np.asarray(seqs[j]), np.asarray(tgts[j])

    def __getstate__(self):  # memmaps are reopened in each worker process
        return {**self.__dict__, "_maps": {}}

