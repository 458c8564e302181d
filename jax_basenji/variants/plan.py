"""Which window scores each VCF row: variants grouped into shared windows, each row an edit of one.

Rows at the same position always share a window. With `--cluster-pct P` (baskerville's
`cluster_snps`), a sorted VCF's rows on one chromosome within int(P * L) bp of a cluster's first
row join it, and the window is centred on the middle of the cluster (`SNPCluster.delimit`:
start = (first + last position) // 2 - L // 2, 0-based), so REF is predicted once per cluster. A
one-row cluster's window is the row's own centred window (alleles.window_pair's).

A same-length allele (SNV, MNV of up to `edit` bp) is an *edit* of its cluster's window: ALT
written over the genome's REF. Where the genome carries the row's ALT instead (a flipped VCF),
the edit writes REF and the statistics swap (REF = the edit, ALT = the genome). Everything else
— indels, a flip to another ALT of the record, an allele past the window — takes the *full path*:
its own centred REF and ALT windows from `alleles.window_pair`.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from jax_basenji.data.genome import Genome, encode
from jax_basenji.geometry import variant_start
from jax_basenji.variants.alleles import N_INDEX, window_pair
from jax_basenji.variants.vcf import Variant

SCORED, FLIPPED, SKIPPED = 0, 1, 2  # a row's status: scored as the genome reads, scored with REF put back, not scored


def clusters(stream: Iterator[Variant], distance: int) -> Iterator[list[Variant]]:
    """Consecutive rows sharing a window: same chromosome and position as the cluster's first row, or
    (distance > 0) at most `distance - 1` bp after it. Restarted at any cluster's first row, it yields
    the same clusters from there on (what makes a resumed run score the same windows)."""
    cluster: list[Variant] = []
    for v in stream:
        if cluster:
            first = cluster[0]
            if v.chrom != first.chrom or not (v.pos == first.pos or first.pos <= v.pos < first.pos + distance):
                yield cluster
                cluster = []
        cluster.append(v)
    if cluster:
        yield cluster


def window_start(cluster: list[Variant], length: int) -> int:
    """0-based genome start of a cluster's window (SNPCluster.delimit)."""
    positions = [v.pos for v in cluster]
    return variant_start((min(positions) + max(positions)) // 2, length)


@dataclasses.dataclass
class Edit:
    """Row `row` (of its group) as window `parent` with `bases` written from bp `at`."""

    row: int
    parent: int
    at: int
    bases: np.ndarray  # uint8 indices
    lo: int  # first and last bp the allele covers
    hi: int
    swap: bool  # the edit is the row's REF (flipped VCF), the window its ALT


@dataclasses.dataclass
class Group:
    """Consecutive VCF rows from row `first`, their cluster windows and how each row is scored."""

    first: int
    rows: list[Variant]
    windows: np.ndarray  # [slots, L] uint8 cluster windows, N in unused slots
    edits: list[Edit]
    full: list[tuple[int, np.ndarray, np.ndarray]]  # (row, `[L]` REF window, `[L]` ALT window) of full-path rows
    status: np.ndarray  # [rows] int8


def groups(stream: Iterator[Variant], first: int, distance: int, slots: int) -> Iterator[tuple[int, list]]:
    """(first row, up to `slots` clusters) at a time."""
    batch: list[list[Variant]] = []
    for cluster in clusters(stream, distance):
        batch.append(cluster)
        if len(batch) == slots:
            yield first, batch
            first += sum(map(len, batch))
            batch = []
    if batch:
        yield first, batch


def plan(genome: Genome, first: int, cluster_list: list[list[Variant]], slots: int, length: int,
         edit: int) -> Group:
    """The group's cluster windows and, per row, an edit of one or its full-path windows."""
    windows = np.full((slots, length), N_INDEX, np.uint8)
    rows: list[Variant] = []
    edits, full, status = [], [], []
    for c, cluster in enumerate(cluster_list):
        start = window_start(cluster, length)
        windows[c] = genome.fetch(cluster[0].chrom, start, start + length)
        for v in cluster:
            row, pos = len(rows), v.pos - 1 - start
            rows.append(v)
            e = _edit(windows[c], v, pos, edit)
            if isinstance(e, tuple):
                swap, at, bases = e
                edits.append(Edit(row, c, at, bases, pos, pos + len(v.ref) - 1, swap))
            elif e is None and (pair := window_pair(genome, v, length)) is not None:
                full.append((row, pair[0], pair[1]))
                swap = pair[2]
            else:  # neither REF nor a same-length ALT is the genome's
                status.append(SKIPPED)
                continue
            status.append(FLIPPED if swap else SCORED)
    return Group(first, rows, windows, edits, full, np.asarray(status, np.int8))


def _edit(window: np.ndarray, v: Variant, pos: int, widest: int):
    """(swap, at, `[widest]` bases) writing the row's allele into `window` at `pos`; SKIPPED when neither
    REF nor a same-length ALT is the genome's; None for the full path."""
    n, length = len(v.ref), len(window)
    if len(v.alt) != n or n > widest or pos < 0 or pos + n > length:
        return None
    genome_allele = window[pos:pos + n]
    if np.array_equal(genome_allele, encode(v.ref)):
        swap, allele = False, v.alt
    elif v.alt != v.ref and np.array_equal(genome_allele, encode(v.alt)):
        swap, allele = True, v.ref  # flipped: the genome is ALT, the edit puts REF back
    elif any(len(a) == n and np.array_equal(genome_allele, encode(a)) for a in v.record_alts):
        return None  # flipped to another ALT: REF and ALT both differ from the genome
    else:
        return SKIPPED
    at = min(pos, length - widest)
    bases = window[at:at + widest].copy()
    bases[pos - at: pos - at + n] = encode(allele)
    return swap, at, bases


def edited(window: np.ndarray, e: Edit) -> np.ndarray:
    """`[L]` the window with the edit written in."""
    out = window.copy()
    out[e.at:e.at + len(e.bases)] = e.bases
    return out
