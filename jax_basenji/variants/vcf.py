"""Variants from a VCF (plain, bgzipped or indexed) via pysam, one row per ALT allele.

Multi-allelic records become one variant per ALT; a record whose ID is `.`
gets `chrom:pos:ref:alt`. Symbolic (`<DEL>`), breakend and `*` alleles have
no sequence to score: they are skipped and counted.
"""

from __future__ import annotations

import dataclasses
import re

from jax_basenji.errors import InputError

_BASES = re.compile(r"^[ACGTNacgtn]+$")


@dataclasses.dataclass(frozen=True)
class Variant:
    id: str
    chrom: str
    pos: int  # 1-based position of REF's first base (VCF)
    ref: str
    alt: str

    def swapped(self) -> "Variant":
        return dataclasses.replace(self, ref=self.alt, alt=self.ref)


def read_vcf(path: str) -> tuple[list[Variant], int]:
    """(variants, number of ALT alleles skipped as non-sequence). InputError for an unreadable file."""
    import pysam

    variants, skipped = [], 0
    verbosity = pysam.set_verbosity(0)  # htslib's own warnings would echo VCF lines; our errors say it once
    try:
        with pysam.VariantFile(path) as vcf:
            for rec in vcf:
                ref = rec.ref or ""
                for alt in rec.alts or ():
                    if not (_BASES.match(ref) and _BASES.match(alt)):
                        skipped += 1
                        continue
                    ids = rec.id.split(";")[0] if rec.id else f"{rec.chrom}:{rec.pos}:{ref}:{alt}"
                    variants.append(Variant(ids, rec.chrom, int(rec.pos), ref.upper(), alt.upper()))
    except FileNotFoundError:
        raise InputError(f"{path} is missing") from None
    except (OSError, ValueError) as e:  # htslib: not a VCF, truncated bgzf, malformed line
        raise InputError(f"{path} is not a readable VCF: {e}") from None
    finally:
        pysam.set_verbosity(verbosity)
    return variants, skipped
