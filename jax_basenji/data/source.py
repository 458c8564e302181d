"""`BasenjiSource`: a grain random-access source over a converted store."""

from __future__ import annotations

import threading

import numpy as np

from jax_basenji.data.genome import Genome
from jax_basenji.geometry import centred
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
        self._genome_lock = threading.Lock()

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
            start, end = centred(region.start, region.end, self.seq_length)
            index = self.genome.fetch(region.chrom, start, end)
        return {"sequence": index_to_one_hot(index), "target": target}

    def read_into(self, i: int, sequence: np.ndarray | None, target: np.ndarray) -> None:
        """Example `i` written into `sequence` `[L]` uint8 index (A0 C1 G2 T3 N4; None: skipped) and
        `target` `[bins, T]` float16, e.g. rows of a batch buffer (`jax_basenji.data.reader`): no
        per-example arrays, the store's checksums checked."""
        if self.genome is None:
            self.store.read_into(int(i), sequence, target)
            return
        if sequence is not None:
            region = self.store.regions[int(i)]
            start, end = centred(region.start, region.end, self.seq_length)
            with self._genome_lock:  # pyfaidx reads through one shared file handle
                sequence[:] = self.genome.fetch(region.chrom, start, end)
        self.store.read_into(int(i), target=target)

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_genome_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _genome_lock=threading.Lock())

    def __repr__(self) -> str:
        return (f"BasenjiSource({self.store.dir!r}, {len(self)} examples, "
                f"seq_length={self.seq_length}, targets={self.store.target_shape})")


def read_as_one(stores: list[str], species: str, subset: str, names: list[str] | None = None):
    """One store's `BasenjiSource`, or several over the same regions read as one (`ConcatSource`, tracks in
    the order given, as `finetune --data` trains them)."""
    sources = [BasenjiSource(s, species, subset) for s in stores]
    return sources[0] if len(sources) == 1 else ConcatSource(sources, names)


class ConcatSource:
    """Several sources over the same regions, their tracks concatenated in order.

    E.g. an ATAC store and an RNA store built over the same BED: example i is
    the shared sequence and `[bins, T_atac + T_rna]` targets.
    """

    def __init__(self, sources: list, names: list[str] | None = None):
        """`names` (e.g. finetune's modality names) prefix track descriptions that lack an assay."""
        first = sources[0]
        for other in sources[1:]:
            if other.regions != first.regions:
                raise DataError(f"{other.store.dir} and {first.store.dir} do not hold the same regions "
                                 f"in the same order ({len(other)} vs {len(first)} {first.subset} examples)")
            if other.target_shape[0] != first.target_shape[0]:
                raise DataError(f"{other.store.dir} has {other.target_shape[0]} bins per example; "
                                 f"{first.store.dir} has {first.target_shape[0]}")
        self.sources, self.names = sources, names
        # The stores share regions, bins and geometry (checked above): the first one's describe all.
        self.seq_length, self.subset = first.seq_length, first.subset
        self.species, self.store = first.species, first.store
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
        """The stores' targets.txt rows in order, as one table: index columns (`row`, `index`) and
        `strand_pair` renumbered to the concatenation; with `names`, each description starts with an assay."""
        names = self.names or [None] * len(self.sources)
        rows = [t if name is None or ":" in t.get("description", "") else
                {**t, "description": f"{name.upper()}:{t.get('description') or t.get('identifier', '')}"}
                for name, s in zip(names, self.sources) for t in s.targets]
        pairs = self.strand_pair if self.strand_pair is not None else np.arange(len(rows))
        stranded = any("strand_pair" in t for t in rows)
        return [{**t, **{k: str(i) for k in ("row", "index") if k in t},
                 **({"strand_pair": str(int(pairs[i]))} if stranded else {})} for i, t in enumerate(rows)]

    @property
    def regions(self):
        return self.sources[0].regions

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        items = [s[i] for s in self.sources]
        return {"sequence": items[0]["sequence"],
                "target": np.concatenate([it["target"] for it in items], axis=1)}

    def read_into(self, i: int, sequence: np.ndarray | None, target: np.ndarray) -> None:
        """`BasenjiSource.read_into` of the concatenation: the first source's sequence, each source's
        tracks in their columns of `target` `[bins, T_1 + ... + T_n]`."""
        if len(self.sources) == 1:
            self.sources[0].read_into(i, sequence, target)
            return
        start = 0
        for k, s in enumerate(self.sources):
            # A block of columns is not contiguous: each part is read whole, then placed (one more copy).
            part = np.empty(s.target_shape, np.float16)
            s.read_into(i, sequence if k == 0 else None, part)
            target[:, start:start + s.num_targets] = part
            start += s.num_targets

    def __repr__(self) -> str:
        return f"ConcatSource({self.sources!r})"
