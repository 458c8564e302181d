"""`BasenjiSource`: a grain random-access source over a converted store."""

from __future__ import annotations

import numpy as np

from jax_basenji.data.genome import Genome, centered
from jax_basenji.data.layout import index_to_one_hot
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
            raise ValueError(f"seq_length {self.seq_length} differs from the stored "
                             f"{self.store.seq_length}: pass the genome FASTA to re-extract sequences")
        self.strand_pair = (None if self.store.meta.get("strand_pair") is None
                            else np.asarray(self.store.meta["strand_pair"]))

    def __len__(self) -> int:
        return len(self.store)

    @property
    def num_targets(self) -> int:
        return self.store.target_shape[1]

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
