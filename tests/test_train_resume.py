"""Resuming a training run from an older checkpoint when the newest is damaged. (After kill -9: the
2-process CLI run of tests/test_train_multiprocess_cli.py.)"""

import os

import numpy as np
import pytest

from jax_basenji.checkpoint import CheckpointError, load_arrays
from jax_basenji.config import ModelConfig
from jax_basenji.train import train
from tests.train_helpers import flat, make_store, small_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("resume_data"))


def _damage_newest_array_file(step_dir):
    """Flip one byte in the largest array file of a training checkpoint (a bad disk block)."""
    chunks = sorted((p for p in step_dir.rglob("*") if p.is_file() and "/d/" in str(p)), key=lambda p: p.stat().st_size)
    data = bytearray(chunks[-1].read_bytes())
    data[len(data) // 2] ^= 0x01
    chunks[-1].write_bytes(bytes(data))


def test_a_damaged_newest_checkpoint_falls_back_to_the_older_one(store, tmp_path, capsys):
    """Saves at rounds 2 and 4 (two kept); round 4's damaged: the resume says so in one line,
    continues from round 2, and ends with the weights of an uninterrupted run. Both species train,
    alternating, so the resume also restores where each species' data stream was."""
    run = dict(checkpoint_every=2, eval_every=0, keep_checkpoints=2)
    straight = train(ModelConfig.tiny(), small_run(store, tmp_path / "straight", steps=6, **run), progress=False)
    train(ModelConfig.tiny(), small_run(store, tmp_path / "damaged", steps=4, **run), progress=False)
    latest = tmp_path / "damaged" / "checkpoints" / "latest"
    assert sorted(os.listdir(latest)) == ["2", "4"]
    _damage_newest_array_file(latest / "4")
    capsys.readouterr()
    resumed = train(ModelConfig.tiny(), small_run(store, tmp_path / "damaged", steps=6, **run), progress=False)
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if line.startswith("skipped the checkpoint of round 4")]
    assert len(skipped) == 1 and "damaged" in skipped[0], err
    assert "resumed from round 2" in err
    assert (tmp_path / "damaged" / "checkpoints" / "damaged" / "latest-4").is_dir()  # kept for inspection
    a, b = flat(load_arrays(straight["model"])[0]), flat(load_arrays(resumed["model"])[0])
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_every_checkpoint_damaged_stops_instead_of_starting_afresh(store, tmp_path):
    run = dict(species=("human",), checkpoint_every=2, eval_every=0, keep_checkpoints=1)
    train(ModelConfig.tiny(), small_run(store, tmp_path / "run", steps=2, **run), progress=False)
    _damage_newest_array_file(tmp_path / "run" / "checkpoints" / "latest" / "2")
    with pytest.raises(CheckpointError, match="no checkpoint in .*latest reads back completely"):
        train(ModelConfig.tiny(), small_run(store, tmp_path / "run", steps=4, **run), progress=False)
    assert os.listdir(tmp_path / "run" / "checkpoints" / "latest") == ["2"]  # nothing moved
