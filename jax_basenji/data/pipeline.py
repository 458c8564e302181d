"""The one data path: grain source -> shard -> shuffle -> repeat -> augment -> batch -> prefetch.

Batches are dicts of numpy arrays: `sequence` `[batch, L, 4]` uint8 one-hot and
`target` `[batch, bins, T]` float16. Each process reads its own slice of the
source (`process_index::process_count`), so multi-host training feeds
`jax.make_array_from_process_local_data` with disjoint data. The iterator's
`get_state()` / `set_state()` make the position checkpointable: a restored
iterator continues with exactly the batches the saved one would have given.
"""

from __future__ import annotations

import grain
from absl import flags

from jax_basenji.data.augment import Augment


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
    ds = grain.MapDataset.source(source)[process_index::process_count]
    if len(ds) < batch_size and drop_remainder:
        raise ValueError(f"{len(ds)} examples for this process cannot fill a batch of {batch_size}")
    if shuffle:
        ds = ds.shuffle(seed=seed)
    if num_epochs != 1:
        ds = ds.repeat(num_epochs)
    if augment:
        ds = ds.random_map(Augment(getattr(source, "strand_pair", None)), seed=seed)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    it = ds.to_iter_dataset()
    if workers > 0:
        # grain's worker processes read absl flags, which only absl.app parses.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return it
