"""The random-access store: Basenji TFRecords converted once into memory-mappable shards.

  STORE/{species}/meta.json                       statistics.json, targets.txt rows, strand pairs
  STORE/{species}/{subset}/{shard}.seq.u8         [n, seq_length] uint8 index (A0 C1 G2 T3 N4)
  STORE/{species}/{subset}/{shard}.tgt.f16        [n, target_length, num_targets] float16
  STORE/{species}/{subset}/{shard}.json           {"n": n} - written last: the shard is complete
  STORE/{species}/{subset}/index.json             shards in record order + the subset's BED rows

One shard per TFRecord file. A shard is written under temporary names and
renamed, its .json last, so an interrupted conversion never leaves a shard
that looks complete, and a re-run skips every finished shard; a failed one
leaves no temporary file, and meta.json is written only when every subset is
complete. The raw files are plain C-order arrays: reading an example is a
memory-mapped slice. Sequences are stored 4x smaller than one-hot; targets as
the records' float16.

Integrity: every JSON file is sealed with the CRC32C of its content, and each
shard's .json holds the CRC32C of every example's sequence and target bytes,
checked on every read (~17 GB/s): a damaged store is an error naming the file
and example, never silently different data. Stores written before the checksums
are read without them.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from typing import Sequence

import numpy as np
from tqdm import tqdm

from jax_basenji.atomic import write_json
from jax_basenji.integrity import crc, seal_ok, sealed
from jax_basenji.data.checksum import crc32c_extend
from jax_basenji.data.layout import (SUBSETS, DataError, Region, Statistics, iter_file_examples,
                                     read_bed, read_targets, strand_pairs, tfrecord_files)

FORMAT = "jax_basenji.store/1"


def _convert_shard(tfr: str, out_dir: str, stats: Statistics, overwrite: bool = False) -> int:
    """Convert one TFRecord file; returns its record count (skips a finished shard)."""
    name = os.path.basename(tfr)[: -len(".tfr")]
    done = os.path.join(out_dir, name + ".json")
    source = _source_identity(tfr)
    if os.path.exists(done):
        finished = read_json(done)
        if finished.get("source") == source:
            return finished["n"]  # resumed: this shard is done, from this very file
        if not overwrite:
            raise DataError(f"{done} was converted from another input than {tfr} (path, size or modification "
                            "time differ); pass --overwrite to convert it again")
    seq_path, tgt_path = (os.path.join(out_dir, name + ext) for ext in (".seq.u8", ".tgt.f16"))
    crcs = []
    try:
        with open(seq_path + ".tmp", "wb") as fs, open(tgt_path + ".tmp", "wb") as ft:
            for seq, tgt in iter_file_examples(tfr, stats):
                tgt = np.ascontiguousarray(tgt, np.float16)
                fs.write(seq.tobytes())
                ft.write(tgt.tobytes())
                crcs.append([crc(seq), crc(tgt)])
    except BaseException:
        for tmp in (seq_path + ".tmp", tgt_path + ".tmp"):
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    os.replace(seq_path + ".tmp", seq_path)
    os.replace(tgt_path + ".tmp", tgt_path)
    write_json(done, sealed({"n": len(crcs), "source": source, "example_crc32c": crcs}))
    return len(crcs)


def read_json(path: str) -> dict:
    """A store JSON file, its seal checked; DataError naming the file if it is missing or damaged."""
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read())
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{path}: damaged store file ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or not seal_ok(obj):
        raise DataError(f"{path}: damaged store file (its content does not match its checksum)")
    return obj


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
        write_json(os.path.join(subset_dir, "index.json"), sealed({
            "shards": [os.path.basename(f)[: -len(".tfr")] for f in files], "counts": shard_counts,
            "regions": [[r.chrom, r.start, r.end] for r in bed]}))
        counts[subset] = total
    # Last: a species directory with meta.json is complete (readers check for it).
    write_json(os.path.join(out_dir, "meta.json"), sealed({
        "format": FORMAT, "statistics": stats.raw, "targets": targets,
        "strand_pair": None if pairs is None else pairs.tolist(),
        "species_dir": os.path.abspath(species_dir)}))
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


def _missing_subset(store_dir: str, species: str, subset: str) -> str:
    """Why STORE/species/subset cannot be read, and the fix: another --species, --subset or a conversion."""
    where = os.path.join(store_dir, species, subset)
    if os.path.isdir(store_dir) and not os.path.isdir(os.path.join(store_dir, species)):
        have = sorted(d for d in os.listdir(store_dir) if os.path.exists(os.path.join(store_dir, d, "meta.json")))
        if have:
            return f"{store_dir} has no species {species!r}: it has {', '.join(have)} (pass --species)"
    if os.path.exists(os.path.join(store_dir, species, "meta.json")):
        have = sorted(d for d in os.listdir(os.path.join(store_dir, species))
                      if os.path.exists(os.path.join(store_dir, species, d, "index.json")))
        return f"{store_dir}/{species} has no subset {subset!r}: it has {', '.join(have) or 'none'}"
    return f"{where} is not a converted subset (no index.json); run python -m jax_basenji.data convert"


class StoreSubset:
    """Memory-mapped view of one converted subset: `[i] -> (index [L], target [bins, T])`."""

    def __init__(self, store_dir: str, species: str, subset: str):
        self.dir = os.path.join(store_dir, species, subset)
        index_path = os.path.join(self.dir, "index.json")
        meta_path = os.path.join(store_dir, species, "meta.json")
        if not os.path.exists(index_path) or not os.path.exists(meta_path):
            raise DataError(_missing_subset(store_dir, species, subset))
        self.meta, index = read_json(meta_path), read_json(index_path)
        stats = self.meta["statistics"]
        self.seq_length = int(stats["seq_length"])
        self.target_shape = (int(stats["target_length"]), int(stats["num_targets"]))
        self.shards, self.counts = index["shards"], index["counts"]
        self.regions = [Region(c, s, e, subset) for c, s, e in index["regions"]]
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self._maps: dict[int, tuple] = {}  # opened lazily, per process
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _checked_shard(self, k: int) -> tuple[list | None, list]:
        """(per-example CRC32C pairs or None, [(file, dtype, shape)] of its arrays) of shard `k`, sizes checked."""
        n, base = self.counts[k], os.path.join(self.dir, self.shards[k])
        info = read_json(base + ".json")
        crcs = info.get("example_crc32c")
        if info.get("n") != n or (crcs is not None and len(crcs) != n):
            raise DataError(f"{base}.json: damaged store file: {info.get('n')} examples; index.json says {n}")
        arrays = []
        for ext, dtype, shape in ((".seq.u8", np.uint8, (n, self.seq_length)),
                                  (".tgt.f16", np.float16, (n, *self.target_shape))):
            size = np.dtype(dtype).itemsize * int(np.prod(shape))
            if not os.path.exists(base + ext) or os.path.getsize(base + ext) != size:
                raise DataError(f"{base + ext}: damaged store file: missing, or not {size} bytes "
                                f"({shape} {np.dtype(dtype).name}); re-run data convert --overwrite")
            arrays.append((base + ext, dtype, shape))
        return crcs, arrays

    def _shard(self, k: int) -> tuple[np.memmap, np.memmap, list | None]:
        """(sequences, targets, per-example CRC32C pairs or None) of shard `k`."""
        with self._lock:  # reader threads open shards lazily: once each
            if k not in self._maps:
                crcs, arrays = self._checked_shard(k)
                self._maps[k] = (*(np.memmap(path, dtype, "r", shape=shape) for path, dtype, shape in arrays), crcs)
            return self._maps[k]

    def _locate(self, i: int) -> tuple[int, int]:
        """(shard, row in the shard) of example `i`."""
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} out of range for {len(self)} examples")
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return k, i - int(self.offsets[k])

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        k, j = self._locate(i)
        seqs, tgts, crcs = self._shard(k)
        seq, tgt = np.asarray(seqs[j]), np.asarray(tgts[j])
        if crcs is not None and [crc(seq), crc(tgt)] != crcs[j]:
            which = ".seq.u8" if crc(seq) != crcs[j][0] else ".tgt.f16"
            raise DataError(f"{os.path.join(self.dir, self.shards[k])}{which}: example {j} does not match its "
                            "checksum (damaged store; re-run data convert --overwrite)")
        return seq, tgt

    def read_into(self, i: int, sequence: np.ndarray | None = None, target: np.ndarray | None = None) -> None:
        """Example `i` copied straight into `sequence` `[L]` uint8 index and/or `target` `[bins, T]` float16
        (C-contiguous, e.g. rows of a batch buffer), each checked against its CRC32C there.

        The one copy is a memcpy from the memory-mapped shard (the page cache) into the buffer, in chunks;
        the CRC32C reads each chunk back while it is still in the core's cache, so what is checked is what
        the batch holds. On the 2-core development machine one thread copies ~12 GB/s without the check
        and ~8.5 GB/s with it (docs/benchmarks.md, "Input pipeline (issue 14)"); the check runs without the
        GIL (`jax_basenji.data.checksum`), so threads scale. (`pread` into the buffer, which maps no pages,
        measured slower: 6.1 GB/s with the check.)
        """
        k, j = self._locate(i)
        shard = self._shard(k)
        crcs = shard[2]
        for which, out in enumerate((sequence, target)):
            if out is None:
                continue
            rows = shard[which]
            if out.shape != rows.shape[1:] or out.dtype != rows.dtype or not out.flags.c_contiguous:
                raise ValueError(f"read_into needs a C-contiguous {rows.shape[1:]} {rows.dtype} array, "
                                 f"got {out.shape} {out.dtype}")
            value = copy_checksummed(rows[j], out)
            if crcs is not None and f"{value:08x}" != crcs[j][which]:
                raise DataError(f"{os.path.join(self.dir, self.shards[k])}{('.seq.u8', '.tgt.f16')[which]}: "
                                f"example {j} does not match its checksum (damaged store; re-run data convert "
                                "--overwrite)")

    def __getstate__(self):  # memmaps are reopened in each worker process
        state = {**self.__dict__, "_maps": {}}
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.Lock())


# Bytes copied, then checksummed, at a time: the CRC reads them back from the core's cache (1 MiB of L2 on
# the development machine). Smaller chunks pay Python and GIL overhead per chunk: one / two threads copied
# 4.4 / 4.4 GB/s in 64 KiB chunks, 6.3 / 9.4 in 256 KiB, 7.5 / 11.9 in 1 MiB, 8.1 / 11.3 in 4 MiB.
COPY_CHUNK = 1 << 20


def copy_checksummed(source: np.ndarray, out: np.ndarray) -> int:
    """`out[...] = source` (same shape and dtype, both C-contiguous); returns the CRC32C of `out`'s bytes."""
    src, dst = source.reshape(-1).view(np.uint8), out.reshape(-1).view(np.uint8)
    value = 0
    for start in range(0, dst.size, COPY_CHUNK):
        end = min(start + COPY_CHUNK, dst.size)
        np.copyto(dst[start:end], src[start:end])  # numpy releases the GIL for the copy
        value = crc32c_extend(value, dst[start:end])
    return value


def verify(store_dir: str, species: Sequence[str] | None = None, *, progress: bool = True) -> dict:
    """`python -m jax_basenji.data verify`: read every example, checking every checksum
    (e.g. after copying a store); {species: {subset: examples}}. Raises DataError naming the
    first damaged file."""
    if not os.path.isdir(store_dir):
        raise DataError(f"{store_dir} is not a directory")
    names = species or sorted(n for n in os.listdir(store_dir) if os.path.isdir(os.path.join(store_dir, n)))
    counts = {}
    for name in names:
        if not os.path.exists(os.path.join(store_dir, name, "meta.json")):
            raise DataError(f"{os.path.join(store_dir, name)} is not a complete converted species (no meta.json); "
                            "run python -m jax_basenji.data convert")
        counts[name] = {}
        for subset in SUBSETS:
            if not os.path.exists(os.path.join(store_dir, name, subset, "index.json")):
                continue
            data = StoreSubset(store_dir, name, subset)
            for i in tqdm(range(len(data)), desc=f"{name}/{subset}", unit="example", disable=not progress):
                data[i]
            counts[name][subset] = len(data)
    return counts
