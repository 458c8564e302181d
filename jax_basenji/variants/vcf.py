"""Variants from a VCF (plain, bgzipped or indexed) via pysam, streamed: one row per ALT allele.

Multi-allelic records become one variant per ALT; a record whose ID is `.`
gets `chrom:pos:ref:alt`. Symbolic (`<DEL>`), breakend and `*` alleles have
no sequence to score: they are skipped and counted. Nothing holds the whole
file: `scan` counts and checks it once, `variants` streams its rows (from any
row on, for a resumed or sharded run).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Iterator

from jax_basenji.errors import InputError

_BASES = re.compile(r"^[ACGTNacgtn]+$")


@dataclasses.dataclass(frozen=True)
class Variant:
    id: str
    chrom: str
    pos: int  # 1-based position of REF's first base (VCF)
    ref: str
    alt: str
    # Every sequence ALT of the record: upstream sizes a record's windows by its longest ALT and
    # looks for the genome's allele among them.
    record_alts: tuple[str, ...] = ()


@dataclasses.dataclass
class VcfScan:
    """What one pass over a VCF finds: row count, chromosomes, skipped alleles, widest strings."""

    rows: int = 0  # sequence ALT alleles: the rows `variants` yields
    symbolic: int = 0  # ALT alleles skipped as non-sequence
    chroms: set[str] = dataclasses.field(default_factory=set)  # chromosomes with a row
    widths: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"snp": 1, "chr": 1, "ref_allele": 1, "alt_allele": 1})


def _records(path: str) -> Iterator[tuple[object, str, list[str], int]]:
    """(pysam record, REF, its sequence ALTs, non-sequence ALTs) per record; InputError for an unreadable file."""
    import pysam

    verbosity = pysam.set_verbosity(0)  # htslib's own warnings would echo VCF lines; our errors say it once
    try:
        with pysam.VariantFile(path) as vcf:
            for rec in vcf:
                ref = (rec.ref or "").upper()
                alts = [a.upper() for a in rec.alts or () if _BASES.match(ref) and _BASES.match(a)]
                yield rec, ref, alts, len(rec.alts or ()) - len(alts)
    except FileNotFoundError:
        raise InputError(f"{path} is missing") from None
    except (OSError, ValueError) as e:  # htslib: not a VCF, truncated bgzf, malformed line
        raise InputError(f"{path} is not a readable VCF: {e}") from None
    finally:
        pysam.set_verbosity(verbosity)


def variants(path: str, start: int = 0, stop: int | None = None) -> Iterator[Variant]:
    """Rows `start` to `stop` (exclusive; None: the end) of the VCF, in file order."""
    def every() -> Iterator[Variant]:
        for rec, ref, alts, _ in _records(path):
            for alt in alts:
                vid = rec.id.split(";")[0] if rec.id else f"{rec.chrom}:{rec.pos}:{ref}:{alt}"
                yield Variant(vid, rec.chrom, int(rec.pos), ref, alt, tuple(alts))

    return itertools.islice(every(), start, stop)


def scan(path: str) -> VcfScan:
    """One streamed pass: the rows, chromosomes and string widths of a VCF, before any work is done."""
    found = VcfScan()
    w = found.widths
    for rec, ref, alts, symbolic in _records(path):
        found.symbolic += symbolic
        if not alts:
            continue
        found.chroms.add(rec.chrom)
        found.rows += len(alts)
        vid = len(rec.id.split(";")[0]) if rec.id else len(f"{rec.chrom}:{rec.pos}:{ref}:") + max(map(len, alts))
        w["snp"], w["chr"] = max(w["snp"], vid), max(w["chr"], len(rec.chrom))
        w["ref_allele"], w["alt_allele"] = max(w["ref_allele"], len(ref)), max(w["alt_allele"], *map(len, alts))
    return found
