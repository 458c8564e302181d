"""Reference and alternative input windows of a variant, built as upstream basenji builds them.

calico/basenji's `basenji_sad.py` (`vcf.snp_seq1`, `vcf.dna_length_1hot`), whose
scores users compare with, and baskerville's `SNPCluster.delimit` agree on:
- The variant's first base sits at 0-based index L // 2 - 1 of the window
  (`geometry.variant_start`); N beyond the chromosome's ends.
- The genome read is L bp, plus len(REF) - len(longest ALT of the record) when a
  record deletes, and one bp less when it runs past the chromosome's end (snp_seq1
  N-pads such a read to one base short). The REF window is that read, the ALT window
  the read with REF replaced by ALT; each is brought to L by trimming its ends
  *centrally* (the extra bp split between both ends, the odd one on the right) or
  N-padding them centrally (the odd N on the right). So an indel keeps the variant
  near the centre of both.
- Scores are in the VCF's orientation. When the genome carries one of the record's
  ALT alleles where REF should be (a "flipped" VCF), the window is edited to carry
  REF, so SAD = ALT - REF as written; upstream does the same. A flip is only taken
  between alleles of the same length; any other mismatch (a deletion whose REF is
  not the genome's, say) is skipped, never scored on a sequence that is not the genome.
"""

from __future__ import annotations

import numpy as np

from jax_basenji.data.genome import Genome, encode
from jax_basenji.geometry import variant_start
from jax_basenji.variants.vcf import Variant

N_INDEX = 4  # base index of N


def central(seq: np.ndarray, length: int) -> np.ndarray:
    """`[length]` base indices: `seq` trimmed or N-padded equally at both ends (dna_length_1hot's rule)."""
    if len(seq) >= length:
        trim = (len(seq) - length) // 2
        return seq[trim:trim + length]
    front = (length - len(seq)) // 2
    out = np.full(length, N_INDEX, np.uint8)
    out[front:front + len(seq)] = seq
    return out


def window_pair(genome: Genome, v: Variant, length: int) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """(`[length]` REF window, `[length]` ALT window as uint8 base indices (N = 4), flipped), or None when
    neither REF nor a same-length ALT of the record matches the genome (the variant is skipped)."""
    left = length // 2 - 1
    alts = v.record_alts or (v.alt,)
    extra = max(0, len(v.ref) - max(map(len, alts)))  # a deleting record reads this much more genome
    start = variant_start(v.pos, length)
    size = length + extra
    if start + size > genome.chrom_length(v.chrom):  # upstream's read past the end is one base short
        size -= 1
    seq = genome.fetch(v.chrom, start, start + size)
    ref = encode(v.ref)
    flipped = False
    if not np.array_equal(seq[left:left + len(ref)], ref):
        if not any(len(a) == len(ref) and np.array_equal(seq[left:left + len(a)], encode(a)) for a in alts):
            return None
        # the genome carries an ALT: put the VCF's REF in its place (`seq` is a fresh array)
        seq[left:left + len(ref)] = ref
        flipped = True
    alt = np.concatenate([seq[:left], encode(v.alt), seq[left + len(ref):]])
    return central(seq, length), central(alt, length), flipped
