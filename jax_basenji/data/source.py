"""`BasenjiSource`: a grain random-access source over a converted store."""

from __future__ import annotations

import numpy as np

from jax_basenji.data.genome import Genome, centered
from jax_basenji.data.layout import DataError, index_to_one_hot
from jax_basenji.data.store import StoreSubset


class BasenjiSource:
    """`len()` and `[i] -> {"sequence": [L, 4] uint8 one-hot, "target": [bins, T] float16}`.

    Examples come in the order of the subset's rows in sequences.bed. With
    `seq_length` other than the stored one, the sequence is re-extracted from
    `fasta`, centred on the BED interval, N-padded beyond chromosome ends (the
    target stays the stored one, as in the seed).
    """

    def __init__(self, store_dir: str, species: str, subset: str, *,
                 seq_length: int | None = None, fasta: str | None = None):
        self.store = StoreSubset(store_dir, species, subset)
        self.species, self.subset = species, subset
        self.seq_length = seq_length or self.store.seq_length
        self.genome = Genome(fasta) if fasta else None
        if self.seq_length != self.store.seq_length and self.genome is None:
            raise DataError(f"seq_length {self.seq_length} differs from the stored "
                             f"{self.store.seq_length}: pass the genome FASTA to re-extract sequences")
        self.strand_pair = (None if self.store.meta.get("strand_pair") is None
                            else np.asarray(self.store.meta["strand_pair"]))

    def __len__(self) -> int:
        return len(self.store)

    @property
    def num_targets(self) -> int:
        return self.store.target_shape[1]

    @property
    def target_shape(self) -> tuple[int, int]:
        """(bins, tracks) of every example."""
        return tuple(self.store.target_shape)

    @property
    def targets(self) -> list[dict[str, str]]:
        """The rows of targets.txt, one per track."""
        return self.store.meta["targets"]

    @property
    def regions(self):
        return self.store.regions

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        index, target = self.store[int(i)]
        if self.genome is not None:
            region = self.store.regions[int(i)]
            start, end = centered(region.start, region.end, self.seq_length)
            index = self.genome.fetch(region.chrom, start, end)
        return {"sequence": index_to_one_hot(index), "target": target}

    def __repr__(self) -> str:
        return (f"BasenjiSource({self.store.dir!r}, {len(self)} examples, "
                f"seq_length={self.seq_length}, targets={self.store.target_shape})")


class ConcatSource:
    """Several sources over the same regions, their tracks concatenated in order.

    E.g. an ATAC store and an RNA store built over the same BED: example i is
    the shared sequence and `[bins, T_atac + T_rna]` targets.
    """

    def __init__(self, sources: list):
        first = sources[0]
        for other in sources[1:]:
            if other.regions != first.regions:
                raise DataError(f"{other.store.dir} and {first.store.dir} do not hold the same regions "
                                 f"in the same order ({len(other)} vs {len(first)} {first.subset} examples)")
            if other.target_shape[0] != first.target_shape[0]:
                raise DataError(f"{other.store.dir} has {other.target_shape[0]} bins per example; "
                                 f"{first.store.dir} has {first.target_shape[0]}")
        self.sources = sources
        self.seq_length, self.subset = first.seq_length, first.subset
        offsets = np.cumsum([0] + [s.num_targets for s in sources])
        pairs = [s.strand_pair if s.strand_pair is not None else np.arange(s.num_targets) for s in sources]
        self.strand_pair = (None if all(s.strand_pair is None for s in sources)
                            else np.concatenate([p + o for p, o in zip(pairs, offsets)]))

    def __len__(self) -> int:
        return len(self.sources[0])

    @property
    def num_targets(self) -> int:
        return sum(s.num_targets for s in self.sources)

    @property
    def target_shape(self) -> tuple[int, int]:
        return (self.sources[0].target_shape[0], self.num_targets)

    @property
    def targets(self) -> list[dict[str, str]]:
        return [t for s in self.sources for t in s.targets]

    @property
    def regions(self):
        return self.sources[0].regions

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        items = [s[i] for s in self.sources]
        return {"sequence": items[0]["sequence"],
                "target": np.concatenate([it["target"] for it in items], axis=1)}

    def __repr__(self) -> str:
        return f"ConcatSource({self.sources!r})"
