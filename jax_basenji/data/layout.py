"""The Basenji2 data directory layout (docs/seed_reference.md), read without TensorFlow.

  SPECIES_DIR/statistics.json   num_targets, seq_length, pool_width, target_length,
                                {train,valid,test}_seqs, optional seq_1hot
  SPECIES_DIR/sequences.bed     chrom start end subset  (one row per record, same order)
  SPECIES_DIR/targets.txt       index genome identifier file clip scale sum_stat description
                                [strand strand_pair clip_soft]
  SPECIES_DIR/tfrecords/{subset}-N.tfr   ZLIB TFRecords of tf.train.Example
                                         {sequence: bytes, target: float16 bytes}
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Iterator

import numpy as np

from jax_basenji.atomic import atomic_open
from jax_basenji.data.tfrecord import RecordError, parse_bytes_features, read_records
from jax_basenji.errors import UserError

SUBSETS = ("train", "valid", "test")


class DataError(UserError):
    """A data file does not match the Basenji layout; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Statistics:
    num_targets: int
    seq_length: int
    target_length: int
    pool_width: int
    counts: dict[str, int]  # subset -> number of examples
    raw: dict  # the whole statistics.json, kept for the store

    @classmethod
    def read(cls, species_dir: str) -> "Statistics":
        path = os.path.join(species_dir, "statistics.json")
        try:
            with open(path) as f:
                raw = json.load(f)
            return cls(num_targets=int(raw["num_targets"]), seq_length=int(raw["seq_length"]),
                       target_length=int(raw["target_length"]), pool_width=int(raw.get("pool_width", 128)),
                       counts={s: int(raw.get(f"{s}_seqs", 0)) for s in SUBSETS}, raw=raw)
        except FileNotFoundError:
            raise DataError(f"{path} is missing") from None
        except (KeyError, ValueError, TypeError) as e:
            raise DataError(f"{path}: unreadable or incomplete ({type(e).__name__}: {e})") from None


@dataclasses.dataclass(frozen=True)
class Region:
    chrom: str
    start: int
    end: int
    subset: str


def read_bed(species_dir: str) -> list[Region]:
    return read_bed_file(os.path.join(species_dir, "sequences.bed"))


def bed_lines(path: str, error=None) -> Iterator[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of a BED file's data lines (blank, `#`, track and browser
    lines skipped); a missing or binary file is an `error` (default DataError) naming it."""
    error = error or DataError
    try:
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                if line.strip() and not line.startswith(("#", "track", "browser")):
                    yield line_no, line.rstrip("\n").split("\t")
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except UnicodeDecodeError as e:
        raise error(f"{path} is not a text BED file ({e})") from None


def read_bed_file(path: str) -> list[Region]:
    """`chrom start end subset` rows (tab-separated; comments and track lines skipped)."""
    regions = []
    for line_no, fields in bed_lines(path):
        try:
            regions.append(Region(fields[0], int(fields[1]), int(fields[2]), fields[3]))
        except (IndexError, ValueError):
            raise DataError(f"{path}:{line_no}: expected 'chrom start end subset', got "
                            f"{chr(9).join(fields)!r}") from None
    return regions


def read_targets(species_dir: str) -> list[dict[str, str]]:
    """Rows of SPECIES_DIR/targets.txt as dicts (header names as keys)."""
    return read_targets_file(os.path.join(species_dir, "targets.txt"))


def read_targets_file(path: str) -> list[dict[str, str]]:
    """Rows of a targets.txt as dicts (header names as keys)."""
    try:
        with open(path) as f:
            lines = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{path} is missing") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text targets table") from None
    if not lines:
        raise DataError(f"{path} is empty; expected a header line and one line per track")
    header = lines[0]
    if header[0] == "":  # pandas-written files start with an unnamed index column
        header[0] = "row"
    for i, row in enumerate(lines[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{i}: {len(row)} fields; the header has {len(header)}")
    return [dict(zip(header, row)) for row in lines[1:]]


def write_targets_file(path: str, rows: list[dict[str, str]]) -> str:
    """A targets.txt (Basenji's: an unnamed index column, then the columns of `rows`, first seen first)."""
    columns = list(dict.fromkeys(k for r in rows for k in r if k != "row"))
    with atomic_open(path) as f:
        f.write("\t" + "\t".join(columns) + "\n")
        f.writelines(f"{i}\t" + "\t".join(str(r.get(c, "")) for c in columns) + "\n" for i, r in enumerate(rows))
    return path


def strand_pairs(targets: list[dict[str, str]], path: str = "targets.txt") -> np.ndarray | None:
    """Permutation that swaps each stranded track with its pair, or None if unstranded."""
    if not targets or "strand_pair" not in targets[0]:
        return None
    try:
        perm = np.asarray([int(t["strand_pair"]) for t in targets])
    except ValueError as e:
        raise DataError(f"{path}: strand_pair is not an integer ({e})") from None
    if sorted(perm.tolist()) != list(range(len(perm))):
        raise DataError(f"{path}: strand_pair is not a permutation of the track indices")
    return None if np.array_equal(perm, np.arange(len(perm))) else perm


def tfrecord_files(species_dir: str, subset: str) -> list[str]:
    """`{subset}-N.tfr` files in record order (by N, numerically)."""
    directory = os.path.join(species_dir, "tfrecords")
    if not os.path.isdir(directory):
        raise DataError(f"{directory} is missing")
    pattern = re.compile(rf"^{subset}-(\d+)\.tfr$")
    found = [(int(m.group(1)), name) for name in os.listdir(directory) if (m := pattern.match(name))]
    return [os.path.join(directory, name) for _, name in sorted(found)]


def decode_record(data: bytes, stats: Statistics) -> tuple[np.ndarray, np.ndarray]:
    """Record payload -> (sequence `[L]` uint8 index A0 C1 G2 T3 N4, target `[bins, T]` float16)."""
    feats = parse_bytes_features(data, ("sequence", "target"))
    seq_bytes, tgt_bytes = feats["sequence"], feats["target"]
    length = stats.seq_length
    tgt_size = stats.target_length * stats.num_targets * 2
    if len(tgt_bytes) != tgt_size:
        raise RecordError(f"target has {len(tgt_bytes)} bytes; statistics.json implies "
                          f"{stats.target_length} x {stats.num_targets} float16 = {tgt_size}")
    target = np.frombuffer(tgt_bytes, np.float16).reshape(stats.target_length, stats.num_targets)
    # The byte count tells the encoding apart (seq_1hot in statistics.json only hints it).
    if len(seq_bytes) == length:
        index = np.frombuffer(seq_bytes, np.uint8)
        if index.max(initial=0) > 4:
            raise RecordError(f"sequence index holds value {int(index.max())}; expected 0-4")
        return index.copy(), target
    if len(seq_bytes) == 4 * length:
        one_hot = np.frombuffer(seq_bytes, np.uint8).reshape(length, 4)
        return one_hot_to_index(one_hot), target
    raise RecordError(f"sequence has {len(seq_bytes)} bytes; expected {length} (index) or "
                      f"{4 * length} (one-hot) for seq_length {length}")


def one_hot_to_index(one_hot: np.ndarray) -> np.ndarray:
    """`[L, 4]` one-hot -> `[L]` uint8 index; all-zero rows become 4 (N)."""
    hot = one_hot != 0
    if (hot.sum(axis=-1) > 1).any():
        raise RecordError("sequence one-hot has a position with more than one base")
    return np.where(hot.any(axis=-1), hot.argmax(axis=-1), 4).astype(np.uint8)


def index_to_one_hot(index: np.ndarray) -> np.ndarray:
    """`[..., L]` uint8 index -> `[..., L, 4]` uint8 one-hot (4 = N -> all zeros)."""
    table = np.concatenate([np.eye(4, dtype=np.uint8), np.zeros((1, 4), np.uint8)])
    return table[index]


def iter_file_examples(path: str, stats: Statistics) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(sequence index, target) for every record of one TFRecord file, in order."""
    for i, data in enumerate(read_records(path)):
        try:
            yield decode_record(data, stats)
        except RecordError as e:
            raise RecordError(f"{path}: record {i}: {e}") from None
