"""Shared by the training tests: a small two-species store and helpers."""

import numpy as np
from flax.traverse_util import flatten_dict

from jax_basenji.data.__main__ import main as data_main
from jax_basenji.data.store import convert
from jax_basenji.train_config import TrainConfig


def make_store(root) -> str:
    """Synthetic human (8 tracks) + mouse (4 tracks) data at 16,384 bp, converted; returns the store."""
    assert data_main(["synth", "--output", str(root / "basenji"), "--seq-length", "16384",
                      "--tracks", "human=8,mouse=4", "--examples", "train=16,valid=8,test=8",
                      "--no-progress"]) == 0
    convert(str(root / "basenji"), str(root / "store"), progress=False)
    return str(root / "store")


def small_run(store, workdir, **kw) -> TrainConfig:
    base = dict(data=store, workdir=str(workdir), steps=6, batch_size=4, optimizer="adam", lr=1e-3,
                momentum=0.9, eval_every=3, eval_batches=2, checkpoint_every=3)
    return TrainConfig(**{**base, **kw})


def flat(tree) -> dict:
    return {"/".join(map(str, path)): np.asarray(v) for path, v in flatten_dict(tree).items()}
