"""The threaded batch reader: checkpointable position, reused buffers, checksums, every source kind."""

import os
import shutil

import numpy as np
import pytest

from jax_basenji.data import BasenjiSource, ConcatSource, DataError, make_dataset
from jax_basenji.data.layout import index_to_one_hot
from jax_basenji.data.pipeline import make_train_iterator
from jax_basenji.data.reader import BufferPool
from tests.train_helpers import make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("reader_data"))


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_rows_are_the_stored_examples_of_the_pipeline_order(store):
    src = BasenjiSource(store, "mouse", "train")
    plain = iter(make_dataset(src, batch_size=4, seed=2))  # no augmentation: one-hot of the stored rows
    reader = make_train_iterator(src, batch_size=4, seed=2, augment=False)
    for _ in range(6):  # more than one epoch of 16 examples
        expected, batch = next(plain), next(reader)
        assert set(batch) == {"sequence", "target"}
        np.testing.assert_array_equal(index_to_one_hot(batch["sequence"]), expected["sequence"])
        np.testing.assert_array_equal(batch["target"], expected["target"])
    reader.close()


def test_a_restored_position_continues_with_the_same_batches(store):
    src = BasenjiSource(store, "human", "train")
    reader = make_train_iterator(src, batch_size=4, seed=5, threads=2)
    grain_it = iter(make_dataset(src, batch_size=4, seed=5, augment=True))
    for _ in range(3):
        next(reader), next(grain_it)
    state = reader.get_state()
    assert state == grain_it.get_state()  # a checkpoint of either pipeline resumes in the other
    expected = [{k: v.copy() for k, v in next(reader).items()} for _ in range(4)]  # crosses the epoch end
    for threads in (0, 1):
        restored = make_train_iterator(src, batch_size=4, seed=5, threads=threads)
        next(restored)  # batches in flight are dropped by set_state
        restored.set_state(state)
        for e in expected:
            _same(next(restored), e)
        restored.close()
    reader.close()


def test_finite_epochs_end(store):
    src = BasenjiSource(store, "human", "train")
    reader = make_train_iterator(src, batch_size=4, seed=0, num_epochs=1)
    assert len(list(reader)) == 4
    reader.close()


def test_buffers_are_reused_only_once_nothing_refers_to_a_batch():
    pool = BufferPool({"target": ((2, 3), np.float16)})
    kept = pool.take()["target"][1]  # a row view is enough to keep the buffer in use
    kept[:] = 7
    for _ in range(5):
        batch = pool.take()
        batch["target"][:] = 0
        del batch
    np.testing.assert_array_equal(kept, 7)
    assert pool.allocated == 2  # the kept buffer, and one buffer reused for the five others
    del kept
    pool.take()
    pool.take()
    assert pool.allocated == 2


def test_a_damaged_example_is_an_error_naming_its_file_and_example(store, tmp_path):
    damaged = tmp_path / "store"
    shutil.copytree(store, damaged)
    shard = damaged / "human" / "train" / "train-0.tgt.f16"
    src = BasenjiSource(str(damaged), "human", "train")
    data = bytearray(shard.read_bytes())
    data[3 * int(np.prod(src.target_shape)) * 2 + 100] ^= 0x10  # a bit of example 3's targets
    shard.write_bytes(bytes(data))
    sequence, target = np.empty(src.seq_length, np.uint8), np.empty(src.target_shape, np.float16)
    src.read_into(2, sequence, target)
    with pytest.raises(DataError, match=r"train-0\.tgt\.f16: example 3 does not match its checksum"):
        src.read_into(3, sequence, target)
    reader = make_train_iterator(src, batch_size=4, seed=0, shuffle=False, num_epochs=1)
    with pytest.raises(DataError, match="example 3"):
        next(reader)
    reader.close()


def test_read_into_equals_item_access_for_every_source_kind(store, tmp_path):
    fasta = os.path.join(os.path.dirname(store), "basenji", "hg38.ml.fa")
    longer = BasenjiSource(store, "human", "train", seq_length=20_480, fasta=fasta)  # re-extracted, N-padded
    both = ConcatSource([BasenjiSource(store, "human", "train"), BasenjiSource(store, "human", "train")])
    for src in (BasenjiSource(store, "human", "train"), longer, both):
        sequence = np.empty(src.seq_length, np.uint8)
        target = np.empty(src.target_shape, np.float16)
        for i in (0, 5, len(src) - 1):
            src.read_into(i, sequence, target)
            item = src[i]
            np.testing.assert_array_equal(index_to_one_hot(sequence), item["sequence"])
            np.testing.assert_array_equal(target, item["target"])


def test_concatenated_stores_give_one_table_with_renumbered_strand_pairs(store):
    """Fine-tuning on several stores records their concatenated table as the head's: its index and
    strand_pair columns must describe the concatenation (else --rc on that head permutes the wrong tracks)."""
    from jax_basenji.data import ConcatSource
    from jax_basenji.data.layout import strand_pairs

    one = BasenjiSource(store, "human", "train")
    assert one.strand_pair is not None  # the synthetic human tracks hold stranded CAGE pairs
    both = ConcatSource([one, BasenjiSource(store, "human", "train")], names=["a", "b"])
    rows = both.targets
    n = one.num_targets
    np.testing.assert_array_equal(strand_pairs(rows), np.concatenate([one.strand_pair, one.strand_pair + n]))
    assert [r["index"] for r in rows] == [str(i) for i in range(2 * n)]
    assert [r["description"] for r in rows] == [t["description"] for t in one.targets] * 2  # assays kept
