"""Training batches read by the threaded reader and augmented in the jitted step are the batches of
the host-augmented grain pipeline, row for row, and train to the same weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_basenji.checkpoint import load_arrays
from jax_basenji.config import ModelConfig
from jax_basenji.data import BasenjiSource, make_dataset
from jax_basenji.data.device_augment import augment_batch
from jax_basenji.data.pipeline import make_train_iterator
from jax_basenji.train import train
from tests.train_helpers import flat, make_store, small_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("device_augment_data"))


@pytest.mark.parametrize("process_count", [1, 2])
def test_device_augmented_batches_equal_the_host_augmented_ones(store, process_count):
    """Each process's rows, over two epochs, with stranded tracks (human: pairs 0<->1 and 4<->5)."""
    src = BasenjiSource(store, "human", "train")  # 16 examples
    assert not np.array_equal(src.strand_pair, np.arange(8))
    augment = jax.jit(lambda b: augment_batch(b, src.strand_pair))
    local = 4 // process_count
    rc, shifts = [], []
    for p in range(process_count):
        shard = dict(process_index=p, process_count=process_count)
        host = iter(make_dataset(src, batch_size=local, seed=7, augment=True, **shard))
        reader = make_train_iterator(src, batch_size=local, seed=7, augment=True, threads=2, **shard)
        for _ in range(8):
            expected, batch = next(host), next(reader)
            assert batch["sequence"].shape == (local, 16_384) and batch["sequence"].dtype == np.uint8
            got = augment(batch)
            np.testing.assert_array_equal(np.asarray(got["sequence"]), expected["sequence"])
            np.testing.assert_array_equal(np.asarray(got["target"]), expected["target"])
            rc += list(batch["rc"])
            shifts += list(batch["shift"])
        reader.close()
    assert 0 < sum(rc) < len(rc) and len(set(shifts)) > 3  # both strands and several shifts were compared


def test_reverse_complement_and_shift_of_an_index_batch():
    index = jnp.asarray([[0, 1, 2, 3, 4], [0, 0, 1, 1, 2]], jnp.uint8)  # ACGTN, AACCG
    target = jnp.arange(2 * 2 * 3, dtype=jnp.float16).reshape(2, 2, 3)
    out = augment_batch({"sequence": index, "target": target, "rc": jnp.asarray([True, False]),
                         "shift": jnp.asarray([0, -2])}, strand_pair=np.array([1, 0, 2]))
    one_hot = np.eye(5, dtype=np.uint8)[:, :4]
    np.testing.assert_array_equal(out["sequence"][0], one_hot[[4, 0, 1, 2, 3]])  # NACGT: the other strand
    np.testing.assert_array_equal(out["sequence"][1], one_hot[[1, 1, 2, 4, 4]])  # CCG then N: moved left
    np.testing.assert_array_equal(out["target"][0], [[4, 3, 5], [1, 0, 2]])  # bins reversed, tracks 0/1 swapped
    np.testing.assert_array_equal(out["target"][1], target[1])


def test_one_hot_batches_pass_through_unchanged():
    batch = {"sequence": jnp.zeros((1, 8, 4), jnp.uint8), "target": jnp.ones((1, 2, 3), jnp.float16)}
    assert augment_batch(batch)["sequence"] is batch["sequence"]
    with pytest.raises(ValueError, match="index sequences"):
        augment_batch({**batch, "rc": jnp.zeros(1, bool)})


def test_the_training_loop_gives_the_weights_of_host_augmentation(store, tmp_path):
    """`train` with the threaded reader (default) and with grain's host-augmented worker path
    (`workers=1`, the pipeline before issue 14): the same model, bit for bit. The human head's CAGE
    tracks are strand pairs, which must reach the step."""
    models = {}
    for name, kw in (("reader", {}), ("host", {"workers": 1})):
        tc = small_run(store, tmp_path / name, steps=3, eval_every=0, eval_batches=1, checkpoint_every=3,
                       species=("human",), **kw)
        train(ModelConfig.tiny(), tc, progress=False)
        models[name] = flat(load_arrays(str(tmp_path / name / "model"))[0])
    assert models["reader"].keys() == models["host"].keys()
    for k in models["host"]:
        np.testing.assert_array_equal(models["reader"][k], models["host"][k], err_msg=k)
