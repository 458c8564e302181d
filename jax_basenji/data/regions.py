"""`python -m jax_basenji.data regions`: the Basenji-style region BED (`chrom start end subset`) of a genome.

As upstream basenji_data.py makes its `sequences.bed`: the chromosomes are cut into contigs at runs of N
(assembly gaps), the contigs divided into train / valid / test (named chromosomes, or random contigs
holding a fraction of the bases each), and each contig tiled with windows of the model's input length;
windows with too many N are dropped. With `--bigwig`, only chromosomes every bigWig covers are used, and
a bigWig whose chromosome sizes differ from the FASTA's (another assembly) is refused. The BED feeds
`data tracks --regions`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jax_basenji.atomic import atomic_open
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import SUBSETS
from jax_basenji.errors import InputError


@dataclasses.dataclass(frozen=True)
class RegionsConfig:
    seq_length: int = 131_072  # bp per region: the model's input length
    stride: int | None = None  # bp between region starts within a contig (default seq_length: no overlap)
    gap: int = 1_000  # runs of at least this many N split a chromosome into contigs
    max_n: float = 0.3  # regions with a larger fraction of N are dropped
    valid_chroms: tuple[str, ...] = ()  # chromosomes held out for validation ...
    test_chroms: tuple[str, ...] = ()  # ... and testing; without either, random contigs by fraction:
    valid_frac: float = 0.1  # of the contig bases
    test_frac: float = 0.1
    seed: int = 0  # the random division of contigs


@dataclasses.dataclass(frozen=True)
class Contig:
    chrom: str
    start: int
    end: int


def contigs(index: np.ndarray, chrom: str, gap: int) -> list[Contig]:
    """Stretches of `[length]` base indices (N = 4) between runs of >= `gap` N, and without N at their ends."""
    is_n = np.concatenate([[True], index == 4, [True]])
    edges = np.flatnonzero(np.diff(is_n.astype(np.int8)))  # alternating: first base, end of a stretch
    starts, ends = edges[0::2], edges[1::2]
    out, lo = [], None
    for k, (s, e) in enumerate(zip(starts, ends)):
        lo = s if lo is None else lo
        if k + 1 == len(starts) or starts[k + 1] - e >= gap:  # the N run after it is a gap (or the end)
            out.append(Contig(chrom, int(lo), int(e)))
            lo = None
    return out


def divide(contig_list: list[Contig], cfg: RegionsConfig) -> dict[str, list[Contig]]:
    """{subset: contigs}: by chromosome when valid/test chromosomes are named, else random contigs until
    each held-out subset has its fraction of the bases (upstream's division by percentage)."""
    if cfg.valid_chroms or cfg.test_chroms:
        both = set(cfg.valid_chroms) & set(cfg.test_chroms)
        if both:
            raise InputError(f"{sorted(both)[0]} is named as both a validation and a test chromosome")
        subset = {**{c: "valid" for c in cfg.valid_chroms}, **{c: "test" for c in cfg.test_chroms}}
        return {s: [c for c in contig_list if subset.get(c.chrom, "train") == s] for s in SUBSETS}
    if not (0 <= cfg.valid_frac and 0 <= cfg.test_frac and cfg.valid_frac + cfg.test_frac < 1):
        raise InputError(f"--valid-frac {cfg.valid_frac} and --test-frac {cfg.test_frac}: expected fractions "
                         "summing to less than 1")
    total = sum(c.end - c.start for c in contig_list)
    order = np.random.default_rng(cfg.seed).permutation(len(contig_list))
    out: dict[str, list[Contig]] = {s: [] for s in SUBSETS}
    held = {"test": 0, "valid": 0}
    for k in order:
        c = contig_list[k]
        s = next((s for s, frac in (("test", cfg.test_frac), ("valid", cfg.valid_frac))
                  if held[s] < frac * total), "train")
        if s in held:
            held[s] += c.end - c.start
        out[s].append(c)
    return out


def tile(c: Contig, index: np.ndarray, cfg: RegionsConfig) -> list[tuple[int, int]]:
    """[start, end) windows of `cfg.seq_length` every `stride` bp inside contig `c` of the chromosome's
    base indices `index` whose fraction of N is at most `cfg.max_n`."""
    stride = cfg.stride or cfg.seq_length
    limit = cfg.max_n * cfg.seq_length
    return [(int(s), int(s) + cfg.seq_length) for s in range(c.start, c.end - cfg.seq_length + 1, stride)
            if np.count_nonzero(index[s:s + cfg.seq_length] == 4) <= limit]


def chromosomes_covered(genome: Genome, bigwigs: list[str], chroms: list[str]) -> list[str]:
    """`chroms` that every bigWig covers; InputError for a bigWig of another assembly."""
    import pyBigWig

    kept = list(chroms)
    for path in bigwigs:
        try:
            bw = pyBigWig.open(path)
        except RuntimeError:
            bw = None
        if bw is None:
            raise InputError(f"{path} is not a readable bigWig file")
        sizes = bw.chroms()
        bw.close()
        for c in chroms:
            if c in sizes and sizes[c] != genome.chrom_length(c):
                raise InputError(f"{path}: {c} has {sizes[c]} bp there and {genome.chrom_length(c)} in "
                                 f"{genome.path}: a bigWig of another assembly")
        kept = [c for c in kept if c in sizes]
    return kept


def make_regions(fasta: str, output: str, cfg: RegionsConfig, *, chroms: list[str] | None = None,
                 bigwigs: list[str] = (), overwrite: bool = False) -> dict[str, int]:
    """Write the region BED; returns {subset: regions}."""
    if cfg.seq_length < 1 or (cfg.stride is not None and cfg.stride < 1) or not 0 <= cfg.max_n <= 1:
        raise InputError(f"--seq-length {cfg.seq_length}, --stride {cfg.stride}, --max-n {cfg.max_n}: expected "
                         "positive lengths and a fraction")
    genome = Genome(fasta)
    names = chroms or genome.chromosomes()
    missing = [c for c in names if c not in genome]
    if missing:
        raise InputError(f"--chroms {missing[0]} is not in {fasta}")
    names = chromosomes_covered(genome, list(bigwigs), names) if bigwigs else names
    unknown = sorted(set(cfg.valid_chroms + cfg.test_chroms) - set(names))
    if unknown:
        raise InputError(f"held-out chromosome {unknown[0]} is not among those used ({', '.join(names[:6])}"
                         f"{' ...' if len(names) > 6 else ''})")
    windows: dict[Contig, list[tuple[int, int]]] = {}
    for c in names:  # one chromosome in memory at a time
        index = genome.fetch(c, 0, genome.chrom_length(c))
        windows.update({ctg: tile(ctg, index, cfg) for ctg in contigs(index, c, cfg.gap)})
    rows = [(c.chrom, s, e, subset) for subset, cs in divide(list(windows), cfg).items() for c in cs
            for s, e in windows[c]]
    rank = {c: i for i, c in enumerate(names)}
    rows.sort(key=lambda r: (rank[r[0]], r[1]))
    counts = {s: sum(r[3] == s for r in rows) for s in SUBSETS}
    if not counts["train"]:
        raise InputError(f"no training region of {cfg.seq_length} bp in {fasta} (contigs shorter, or too much N)")
    with atomic_open(output, "w", overwrite) as f:
        f.writelines(f"{c}\t{s}\t{e}\t{subset}\n" for c, s, e, subset in rows)
    return counts
