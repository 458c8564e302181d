"""The data's order: grain source -> shuffle -> repeat -> augment -> shard -> batch -> prefetch.

`make_dataset` batches are dicts of numpy arrays: `sequence` `[batch, L, 4]` uint8
one-hot and `target` `[batch, bins, T]` float16, augmented on the host (evaluation,
tests). `make_train_iterator` gives training the same examples in the same order with
the same augmentation draws, but reads through `reader.BatchReader` (one copy into a
batch buffer, on threads) and leaves the augmentation to the jitted step.

Each process reads only its rows of every global batch of the (shuffled, augmented)
global order, so multi-host training feeds `jax.make_array_from_process_local_data`
with disjoint data and the global batches are the same, row for row, for any number of
processes. The iterators' `get_state()` / `set_state()` make the position
checkpointable: a restored iterator continues with exactly the batches the saved one
would have given.
"""

from __future__ import annotations

import grain
from absl import flags

from jax_basenji.data.augment import Augment, Draws
from jax_basenji.data.layout import DataError
from jax_basenji.data.reader import BatchReader


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


def _arrange(ds: grain.MapDataset, draws, *, batch_size: int, seed: int, shuffle: bool, num_epochs: int | None,
             process_index: int, process_count: int, drop_remainder: bool) -> grain.MapDataset:
    """Shuffle, repeat, random map `draws` (None: none), this process's rows, batch: the order shared by
    `make_dataset` and `batch_plan`, so both give the same examples with the same draws."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside 0..{process_count - 1}")
    if len(ds) // process_count < batch_size and drop_remainder:
        raise DataError(f"{len(ds) // process_count} examples per process cannot fill a batch of {batch_size}")
    if shuffle:
        ds = ds.shuffle(seed=seed)
    if num_epochs != 1:
        ds = ds.repeat(num_epochs)
    if draws is not None:  # keyed by the global position: the same draws whatever the process count
        ds = ds.random_map(draws, seed=seed)
    if process_count > 1:
        ds = ProcessRows(ds, batch_size, process_index, process_count)
    return ds.batch(batch_size, drop_remainder=drop_remainder)


def make_dataset(source, *, batch_size: int, seed: int = 0, shuffle: bool = True,
                 num_epochs: int | None = None, augment: bool = False,
                 process_index: int = 0, process_count: int = 1, workers: int = 0,
                 drop_remainder: bool = True) -> grain.IterDataset:
    """A grain IterDataset of batches from `source` (e.g. a `BasenjiSource`).

    `num_epochs=None` repeats forever (training); `augment` applies the random
    reverse complement (with the source's strand pairs) and -3..+3 bp shift;
    `workers > 0` decodes in that many processes.
    """
    draws = Augment(getattr(source, "strand_pair", None)) if augment else None
    ds = _arrange(grain.MapDataset.source(source), draws, batch_size=batch_size, seed=seed, shuffle=shuffle,
                  num_epochs=num_epochs, process_index=process_index, process_count=process_count,
                  drop_remainder=drop_remainder)
    it = ds.to_iter_dataset()
    if workers > 0:
        # grain's worker processes read absl flags, which only absl.app parses.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return it


def _index_element(i: int) -> dict:
    return {"index": i}


def batch_plan(num_examples: int, *, batch_size: int, seed: int = 0, shuffle: bool = True,
               num_epochs: int | None = None, augment: bool = True, process_index: int = 0,
               process_count: int = 1) -> grain.MapDataset:
    """`make_dataset`'s batches without the data: element k is batch k's {"index": `[b]` example
    indices} plus, with `augment`, {"rc": `[b]` bool, "shift": `[b]` int}, the draws its host
    augmentation would make. Random access: batch k costs the same whatever k."""
    ds = grain.MapDataset.range(num_examples).map(_index_element)
    return _arrange(ds, Draws() if augment else None, batch_size=batch_size, seed=seed, shuffle=shuffle,
                    num_epochs=num_epochs, process_index=process_index, process_count=process_count,
                    drop_remainder=True)


def make_train_iterator(source, *, batch_size: int, seed: int = 0, augment: bool = True, shuffle: bool = True,
                        num_epochs: int | None = None, process_index: int = 0, process_count: int = 1,
                        threads: int = 2, prefetch: int = 2) -> BatchReader:
    """Training batches of `source` (with `read_into`, e.g. a `BasenjiSource`): `make_dataset`'s
    examples, order and augmentation draws, as `{"sequence": [b, L] uint8 index, "target":
    [b, bins, T] float16, "rc": [b] bool, "shift": [b] int32}` for `device_augment.augment_batch`
    (no "rc"/"shift" without `augment`). Checkpointable with `get_state()` / `set_state()`."""
    plan = batch_plan(len(source), batch_size=batch_size, seed=seed, shuffle=shuffle, num_epochs=num_epochs,
                      augment=augment, process_index=process_index, process_count=process_count)
    return BatchReader(source, plan, batch_size=batch_size, threads=threads, prefetch=prefetch)
