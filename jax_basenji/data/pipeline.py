"""The one data path: grain source -> shuffle -> repeat -> augment -> shard -> batch -> prefetch.

Batches are dicts of numpy arrays: `sequence` `[batch, L, 4]` uint8 one-hot and
`target` `[batch, bins, T]` float16. Each process reads only its rows of every
global batch of the (shuffled, augmented) global order, so multi-host training
feeds `jax.make_array_from_process_local_data` with disjoint data and the
global batches are the same, row for row, for any number of processes. The iterator's
`get_state()` / `set_state()` make the position checkpointable: a restored
iterator continues with exactly the batches the saved one would have given.
"""

from __future__ import annotations

import grain
from absl import flags

from jax_basenji.data.augment import Augment
from jax_basenji.data.layout import DataError


class ProcessRows(grain.MapDataset):
    """Process p's share of every global batch: rows [p*b, (p+1)*b) of each B = P*b.

    Process p's j-th element is global element (j // b) * B + p * b + j % b, so the
    local batches, stacked in process order, are exactly the global batch a single
    process reads, row for row (dropout masks, which follow rows, match too).
    """

    def __init__(self, parent: grain.MapDataset, local_batch: int, process_index: int, process_count: int):
        super().__init__(parent)
        self.b, self.p, self.n = local_batch, process_index, process_count

    def __len__(self) -> int:
        return (len(self._parent) // (self.b * self.n)) * self.b

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        step, row = divmod(index, self.b)
        return self._parent[step * self.b * self.n + self.p * self.b + row]


def make_dataset(source, *, batch_size: int, seed: int = 0, shuffle: bool = True,
                 num_epochs: int | None = None, augment: bool = False,
                 process_index: int = 0, process_count: int = 1, workers: int = 0,
                 drop_remainder: bool = True) -> grain.IterDataset:
    """A grain IterDataset of batches from `source` (e.g. a `BasenjiSource`).

    `num_epochs=None` repeats forever (training); `augment` applies the random
    reverse complement (with the source's strand pairs) and -3..+3 bp shift;
    `workers > 0` decodes in that many processes.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside 0..{process_count - 1}")
    ds = grain.MapDataset.source(source)
    if len(ds) // process_count < batch_size and drop_remainder:
        raise DataError(f"{len(ds) // process_count} examples per process cannot fill a batch of {batch_size}")
    if shuffle:
        ds = ds.shuffle(seed=seed)
    if num_epochs != 1:
        ds = ds.repeat(num_epochs)
    if augment:  # keyed by the global position: the same draws whatever the process count
        ds = ds.random_map(Augment(getattr(source, "strand_pair", None)), seed=seed)
    if process_count > 1:
        ds = ProcessRows(ds, batch_size, process_index, process_count)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    it = ds.to_iter_dataset()
    if workers > 0:
        # grain's worker processes read absl flags, which only absl.app parses.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return it
