"""Checkpoints hold parameters, BatchNorm statistics and the model config."""

import json

import jax
import numpy as np
import pytest
from flax import nnx
from flax.traverse_util import flatten_dict

from jax_basenji.checkpoint import CheckpointError, load_model, model_arrays, model_with, read_meta, save_model
from jax_basenji.config import ModelConfig
from jax_basenji.errors import InputError
from jax_basenji.integrity import json_crc
from jax_basenji.model import build_model
from tests.forward import forward


def _trained_tiny(seed=4):
    model = build_model(ModelConfig.tiny(variant="basenji2-prime"), seed=seed)
    model.train()
    forward(model, np.eye(4, dtype=np.float32)[np.zeros((1, 16_384), int)])  # move BN statistics
    return model


def test_save_and_load_restore_everything_and_the_config(tmp_path):
    model = _trained_tiny()
    save_model(str(tmp_path / "ckpt"), model)
    restored, meta = load_model(str(tmp_path / "ckpt"))
    assert restored.cfg == model.cfg and meta["model_config"]["variant"] == "basenji2-prime"
    for a, b in zip(jax.tree.leaves(model_arrays(model)), jax.tree.leaves(model_arrays(restored)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(restored.stem.bn.count[...]) == 1
    assert restored.stem.bn.use_running_average  # loaded ready to predict


def test_a_model_built_around_given_weights_is_the_model_they_came_from():
    """`model_with` (loading, conversion) draws no initial weights, yet gives the whole state of a model
    built and then overwritten, its dropout streams included; missing or misshapen arrays are named."""
    model = _trained_tiny(seed=6)
    arrays = jax.tree.map(np.asarray, model_arrays(model))
    overwritten = build_model(model.cfg, seed=6)  # the way models were loaded before
    nnx.update(overwritten, arrays)
    rebuilt = model_with(model.cfg, arrays, seed=6)
    (want, got) = (jax.tree_util.tree_flatten_with_path(nnx.state(m))[0] for m in (overwritten, rebuilt))
    assert [path for path, _ in got] == [path for path, _ in want]
    for (path, a), (_, b) in zip(want, got):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(b, a, err_msg=jax.tree_util.keystr(path))
    del arrays["dilated"][1]["bn2"]["var"]
    with pytest.raises(InputError, match="the weights lack dilated/1/bn2/var of the basenji2-prime model"):
        model_with(model.cfg, arrays)
    arrays["dilated"][1]["bn2"]["var"] = np.ones(5, np.float32)
    with pytest.raises(InputError, match=r"dilated/1/bn2/var has shape \(5,\), the basenji2-prime model "
                                         r"expects \(32,\)"):
        model_with(model.cfg, arrays)


def test_existing_checkpoint_is_not_overwritten_by_default(tmp_path):
    save_model(str(tmp_path / "ckpt"), _trained_tiny(seed=1))
    with pytest.raises(CheckpointError, match="already exists"):
        save_model(str(tmp_path / "ckpt"), _trained_tiny(seed=2))
    save_model(str(tmp_path / "ckpt"), _trained_tiny(seed=2), overwrite=True)
    restored, _ = load_model(str(tmp_path / "ckpt"))
    np.testing.assert_array_equal(restored.stem.conv.kernel[...], _trained_tiny(seed=2).stem.conv.kernel[...])


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is not a jax_basenji checkpoint"):
        read_meta(str(tmp_path))


def _edit_meta(ckpt, reseal: bool, **config):
    meta_file = next((ckpt / "meta").glob("*"))
    meta = json.loads(meta_file.read_text())
    meta["model_config"].update(config)
    if reseal:
        meta["meta_crc32c"] = json_crc({k: v for k, v in meta.items() if k != "meta_crc32c"})
    meta_file.write_text(json.dumps(meta))


def test_checkpoint_whose_arrays_do_not_fit_its_config(tmp_path):
    """Another layout (e.g. another version's model config), consistently sealed: a config mismatch."""
    save_model(str(tmp_path / "ckpt"), _trained_tiny())
    _edit_meta(tmp_path / "ckpt", reseal=True, stem_channels=20)
    with pytest.raises(CheckpointError,
                       match=r"stored arrays do not match its model config: stem/bn/bias \(16,\) != \(20,\)"):
        load_model(str(tmp_path / "ckpt"))


def test_edited_or_damaged_metadata_is_damage_not_a_config_mismatch(tmp_path):
    save_model(str(tmp_path / "ckpt"), _trained_tiny())
    _edit_meta(tmp_path / "ckpt", reseal=False, stem_channels=20)
    with pytest.raises(CheckpointError, match=r"damaged checkpoint: its metadata \(meta/metadata\) does not "
                                              "match its checksum"):
        load_model(str(tmp_path / "ckpt"))


def test_a_flipped_bit_in_an_array_is_reported_not_restored(tmp_path):
    """orbax stores raw bytes without checksums; the sealed CRC32C of each array catches the flip."""
    save_model(str(tmp_path / "ckpt"), _trained_tiny())
    chunks = sorted((tmp_path / "ckpt" / "state" / "ocdbt.process_0" / "d").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(chunks[-1].read_bytes())
    data[len(data) // 2] ^= 0x10
    chunks[-1].write_bytes(data)
    with pytest.raises(CheckpointError, match=r"damaged (or incomplete )?checkpoint"):
        load_model(str(tmp_path / "ckpt"))


def test_only_parameters_and_batch_statistics_are_saved():
    model = _trained_tiny()
    saved = flatten_dict(model_arrays(model))
    n_params = len(jax.tree.leaves(nnx.state(model, nnx.Param)))
    n_stats = len(jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
    assert len(saved) == n_params + n_stats
    assert jax.tree.leaves(nnx.state(model, nnx.RngState))  # dropout streams exist, unsaved
