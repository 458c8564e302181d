"""Reference and alternative input windows of a variant.

The window has the model's input length L with the variant's first base at
index L // 2: 0-based window start = POS - 1 - L // 2, N beyond the chromosome's
ends. The ALT window keeps L and the variant position (baskerville's convention):
an insertion pushes the right flank out (trimmed on the right), a deletion
pulls more genome in from the right.

REF must match the FASTA. When it does not but ALT does, the pair is scored
swapped (REF <-> ALT) and reported as flipped; when neither matches, the
variant is skipped (counted, never scored on a wrong sequence).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jax_basenji.data.genome import Genome, encode
from jax_basenji.data.layout import index_to_one_hot
from jax_basenji.variants.vcf import Variant


@dataclasses.dataclass(frozen=True)
class Prepared:
    variant: Variant  # as scored: swapped when `flipped`
    flipped: bool


def prepare(genome: Genome, variants: list[Variant]) -> tuple[list[Prepared], list[Variant]]:
    """(variants to score, variants skipped because neither allele matches the FASTA)."""
    scored, skipped = [], []
    for v in variants:
        here = genome.fetch(v.chrom, v.pos - 1, v.pos - 1 + len(v.ref))
        if np.array_equal(here, encode(v.ref)):
            scored.append(Prepared(v, False))
            continue
        there = genome.fetch(v.chrom, v.pos - 1, v.pos - 1 + len(v.alt))
        if np.array_equal(there, encode(v.alt)):
            scored.append(Prepared(v.swapped(), True))
        else:
            skipped.append(v)
    return scored, skipped


def window_pair(genome: Genome, v: Variant, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(`[length, 4]` REF window, `[length, 4]` ALT window), uint8 one-hot, N = all-zero rows."""
    start = v.pos - 1 - length // 2
    extra = max(0, len(v.ref) - len(v.alt))  # a deletion needs this much more genome on the right
    seq = genome.fetch(v.chrom, start, start + length + extra)
    ref = seq[:length]
    mid = length // 2
    alt = np.concatenate([seq[:mid], encode(v.alt), seq[mid + len(v.ref):]])[:length]
    return index_to_one_hot(ref), index_to_one_hot(alt)
