"""Sequences re-extracted from a genome FASTA (what the seed does to train at other lengths).

A read is upper-cased and padded with N beyond the chromosome ends; N (and any
other IUPAC code) becomes an all-zero one-hot row. Indexing uses pyfaidx. Where
windows lie (BED intervals resized around their centre): `jax_basenji.geometry`.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from jax_basenji.data.layout import DataError

# byte -> base index (A0 C1 G2 T3), everything else (N, IUPAC codes) -> 4
_CODE = np.full(256, 4, np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _CODE[_b + 32] = _i
# One thread opens a FASTA at a time: the prefetch threads of `predict.windows` fetch from one Genome, and
# two pyfaidx openings of a FASTA without an index both build `.fai`: one read the other's half-written
# file and lost chromosomes (15 of 30 trials of 4 threads, tests/test_predict_genome.py).
_OPENING = threading.Lock()


def encode(seq: bytes | str) -> np.ndarray:
    """DNA text -> `[len]` uint8 index (case-insensitive; non-ACGT -> 4)."""
    if isinstance(seq, str):
        seq = seq.encode("ascii")
    return _CODE[np.frombuffer(seq, np.uint8)]


class Genome:
    """Random access to a FASTA; opened lazily so it can cross process boundaries."""

    def __init__(self, fasta_path: str):
        self.path = os.path.abspath(fasta_path)
        if not os.path.exists(self.path):
            raise DataError(f"{self.path}: FASTA file is missing")
        self._fasta = None

    def _open(self):
        if self._fasta is None:
            with _OPENING:
                if self._fasta is None:
                    self._fasta = self._open_fasta()
        return self._fasta

    def _open_fasta(self):
        import pyfaidx

        had_index = os.path.exists(self.path + ".fai")
        try:  # pyfaidx builds a missing .fai next to the FASTA
            return pyfaidx.Fasta(self.path, as_raw=True, sequence_always_upper=True, rebuild=False)
        except (OSError, ValueError, pyfaidx.FastaIndexingError) as e:  # a damaged .fai: ValueError
            what = (f"{self.path} has no .fai index and it could not be built" if not had_index
                    else f"{self.path} or its index {self.path}.fai could not be read")
            raise DataError(f"{what}: {type(e).__name__}: {e}") from None

    def chromosomes(self) -> list[str]:
        """Sequence names in FASTA order."""
        return list(self._open().keys())

    def __contains__(self, chrom: str) -> bool:
        return chrom in self._open()

    def chrom_length(self, chrom: str) -> int:
        fasta = self._open()
        if chrom not in fasta:
            raise DataError(f"chromosome {chrom!r} is not in {self.path}")
        return len(fasta[chrom])

    def fetch(self, chrom: str, start: int, end: int) -> np.ndarray:
        """`[end - start]` uint8 index of chrom:[start, end), N beyond the ends."""
        size = self.chrom_length(chrom)
        out = np.full(end - start, 4, np.uint8)
        lo, hi = max(start, 0), min(end, size)
        if lo < hi:
            import pyfaidx

            try:
                out[lo - start: hi - start] = encode(self._open()[chrom][lo:hi])
            except (ValueError, pyfaidx.FetchError) as e:  # bytes that are no text, a .fai past the file
                raise DataError(f"{self.path}: {chrom}:{lo}-{hi} could not be read (damaged FASTA or "
                                f"{self.path}.fai?): {type(e).__name__}: {e}") from None
        return out

    def __getstate__(self):
        return {**self.__dict__, "_fasta": None}
