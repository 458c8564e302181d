"""The published Keras Basenji2 files: read with h5py, reproduced to fp32 rounding.

Fixtures (tests/fixtures/keras, written once by real Keras 2.15 with
scripts/make_keras_fixtures.py): the upstream layer stack at reduced widths,
saved with `model.save` and, built a second time in the same process (shifted
layer-name suffixes), with `save_weights`; Keras' own predictions; one Keras
BatchNormalization training step; Keras' GELU curve. The real-size layout
(30 + 30 + 1 weighted layers, 131,072 bp widths) is exercised with a file this
test writes in the same layout.
"""

import json
import os

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.traverse_util import flatten_dict

from jax_basenji import convert
from jax_basenji.checkpoint import load_model, model_arrays, model_with
from jax_basenji.config import ModelConfig
from jax_basenji.convert.foreign import read_weights
from jax_basenji.model import BatchNorm, build_model
from jax_basenji.ops import gelu_sigmoid
from jax_basenji.predict import Predictor
from parity_tests.helpers import rel_err


def read_as(path, cfg):
    """Read a published file as `cfg` (the production reader, format told by content)."""
    return read_weights(path, cfg.variant, lambda _: cfg)


FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "keras")
REL_TOL = 1e-4
# The fixtures' widths (scripts/make_keras_fixtures.py): 20,480 bp -> 32 bins x 10 tracks.
SMALL = ModelConfig.basenji2(seq_length=20_480, stem_channels=16, tower_init=18, trunk_channels=41,
                             bottleneck_channels=12, final_channels=48, heads=(("human", 10),))


@pytest.fixture(scope="module")
def io():
    return np.load(os.path.join(FIXTURES, "basenji2_small_io.npz"))


@pytest.mark.parametrize("name", ["basenji2_small_model.h5", "basenji2_small_weights.h5"])
def test_keras_files_convert_and_predict_like_keras(tmp_path, io, name, record):
    (tmp_path / "cfg.json").write_text(SMALL.to_json())
    ckpt = tmp_path / "ckpt"
    assert convert.main(["keras-to-jax", "--input", os.path.join(FIXTURES, name), "--output", str(ckpt),
                         "--config", str(tmp_path / "cfg.json")]) == 0
    model, meta = load_model(str(ckpt))
    assert model.cfg.gelu == "sigmoid" and model.cfg.head_tracks == {"human": 10}
    assert meta["converted_from"]["command"] == "keras-to-jax"
    got = Predictor(model, "human")(io["x"])
    want = io["y"]
    assert got.shape == want.shape == (2, 32, 10) and want.std() > 0.1
    record(f"Keras .h5 ({name}), eval, 20480 bp", rel_err(got, want))
    assert rel_err(got, want) <= REL_TOL


def test_other_gelu_forms_do_not_reproduce_keras(io):
    arrays, cfg, _ = read_as(os.path.join(FIXTURES, "basenji2_small_model.h5"), SMALL)
    for gelu in ("erf", "tanh"):
        model = model_with(cfg.replace(gelu=gelu), arrays)
        assert rel_err(Predictor(model, "human")(io["x"]), io["y"]) > 10 * REL_TOL, gelu


def test_gelu_is_keras_sigmoid_form(io):
    np.testing.assert_allclose(gelu_sigmoid(jnp.asarray(io["gelu_x"])), io["gelu_y"], rtol=1e-6, atol=1e-6)


def test_batchnorm_step_follows_keras(io):
    """Keras momentum 0.9 = torch-style 0.1, epsilon 1e-3, and the *biased* batch variance kept."""
    cfg = ModelConfig.basenji2()
    bn = BatchNorm(3, momentum=cfg.bn_momentum, eps=cfg.bn_eps, unbiased=cfg.bn_unbiased_var)
    y = bn(jnp.asarray(io["bn_x"]))
    np.testing.assert_allclose(y, io["bn_y"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.mean[...], io["bn_moving_mean"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(bn.var[...], io["bn_moving_variance"], rtol=1e-6, atol=1e-7)
    torch_rule = BatchNorm(3, momentum=0.1, eps=1e-3, unbiased=True)
    torch_rule(jnp.asarray(io["bn_x"]))
    assert np.abs(np.asarray(torch_rule.var[...]) - io["bn_moving_variance"]).max() > 1e-3


def write_keras_h5(path, model, *, saved_model=True, suffix=0):
    """Write `model`'s weights in Keras 2's HDF5 layout, as the published files hold them.

    Layer order as Keras creates it (GELU, Conv1D, BatchNormalization, pooling,
    Add ...), weightless layers included, names with numeric suffixes from
    `suffix` on; `saved_model`: under model_weights/ (model.save), else at the root.
    """
    cfg, a = model.cfg, model_arrays(model)
    layers, count = [], {}

    def layer(kind, weights=()):
        n = count.get(kind, suffix if kind != "sequence" else 0)
        count[kind] = n + 1
        layers.append((kind if n == 0 else f"{kind}_{n}", list(weights)))

    def block(conv, bn, pool=False, dropout=False):
        layer("gelu")
        layer("conv1d", [("kernel", conv["kernel"])])
        layer("batch_normalization", [(k, bn[j]) for k, j in
                                      (("gamma", "scale"), ("beta", "bias"), ("moving_mean", "mean"),
                                       ("moving_variance", "var"))])
        if dropout:
            layer("dropout")
        if pool:
            layer("max_pooling1d")

    layer("sequence")
    block(a["stem"]["conv"], a["stem"]["bn"], pool=True)
    for i in range(cfg.tower_layers):
        block(a["tower"][i]["conv"], a["tower"][i]["bn"], pool=True)
    for j in range(cfg.dilated_layers):
        d = a["dilated"][j]
        block(d["conv1"], d["bn1"])
        block(d["conv2"], d["bn2"], dropout=True)
        layer("add")
    layer("cropping1d")
    block(a["final"]["conv"], a["final"]["bn"], dropout=True)
    layer("gelu")
    head = a["heads"][cfg.heads[0][0]]["linear"]
    layer("dense", [("kernel", head["kernel"]), ("bias", head["bias"])])

    with h5py.File(path, "w") as f:
        group = f.create_group("model_weights") if saved_model else f
        group.attrs["layer_names"] = [n.encode() for n, _ in layers]
        group.attrs["backend"], group.attrs["keras_version"] = b"tensorflow", b"2.15.0"
        for name, weights in layers:
            g = group.create_group(name)
            g.attrs["weight_names"] = [f"{name}/{var}:0".encode() for var, _ in weights]
            for var, value in weights:
                g.create_dataset(f"{name}/{var}:0", data=np.asarray(value))


def _random_published(cfg, seed):
    model = build_model(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    stats = nnx.state(model, nnx.BatchStat)  # running statistics away from the 0 / 1 defaults
    nnx.update(model, jax.tree.map(
        lambda v: np.asarray(rng.uniform(0.5, 2.0, v.shape), v.dtype) if v.ndim else v, stats))
    return model


def test_real_size_layout_converts_exactly(tmp_path):
    """30 Conv1D + 30 BatchNormalization + Dense at 131,072 bp widths, suffixes shifted."""
    cfg = ModelConfig.basenji2()
    model = _random_published(cfg, seed=0)
    path = str(tmp_path / "model_human.h5")
    write_keras_h5(path, model, saved_model=True, suffix=7)
    arrays, got_cfg, _ = read_as(path, cfg)
    assert got_cfg == cfg  # 5313 tracks -> the human head
    want = model_arrays(model)
    flat_got, flat_want = flatten_dict(arrays), flatten_dict(want)
    assert set(flat_got) == set(flat_want)
    for path_, value in flat_want.items():
        if path_[-1] == "count":  # Keras keeps no batch counter
            assert int(flat_got[path_]) == 0
        else:
            np.testing.assert_array_equal(flat_got[path_], np.asarray(value), err_msg=str(path_))


def test_mouse_file_is_named_by_its_size(tmp_path):
    cfg = ModelConfig.basenji2(seq_length=20_480, heads=(("mouse", 1643),))
    path = str(tmp_path / "model_mouse.h5")
    write_keras_h5(path, _random_published(cfg, seed=1), saved_model=False)
    _, got, _ = read_as(path, ModelConfig.basenji2(seq_length=20_480))
    assert got.head_tracks == {"mouse": 1643}


def _run(argv, capsys):
    rc = convert.main(argv)
    return rc, capsys.readouterr().err.strip()


def test_damaged_or_foreign_files_fail_naming_the_culprit(tmp_path, capsys):
    cfg = SMALL
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    model = _random_published(cfg, seed=2)
    base = ["keras-to-jax", "--config", str(tmp_path / "cfg.json"), "--output", str(tmp_path / "out")]

    good = str(tmp_path / "good.h5")
    write_keras_h5(good, model)
    with h5py.File(good, "a") as f:  # one residual branch's kernel of the wrong width
        name = "conv1d_2"  # the second tower block: 18 -> 21 channels
        del f[f"model_weights/{name}/{name}/kernel:0"]
        f.create_dataset(f"model_weights/{name}/{name}/kernel:0", data=np.zeros((5, 18, 99), np.float32))
    rc, err = _run([*base, "--input", good], capsys)
    assert rc == 2 and "conv1d_2/kernel has shape (5, 18, 99), expected (5, 18, 21)" in err
    assert len(err.splitlines()) == 1

    short = str(tmp_path / "short.h5")
    write_keras_h5(short, model)
    with h5py.File(short, "a") as f:  # a layer lost
        g = f["model_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["layer_names"]]
        g.attrs["layer_names"] = [n.encode() for n in names if n != "batch_normalization_5"]
    rc, err = _run([*base, "--input", short], capsys)
    assert rc == 2 and "has 60 weighted layers" in err and "61" in err

    seed_widths = str(tmp_path / "seed.h5")  # a model of another architecture
    write_keras_h5(seed_widths, _random_published(cfg.replace(dilated_layers=4), seed=3))
    rc, err = _run([*base, "--input", seed_widths], capsys)
    assert rc == 2 and "weighted layers" in err

    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    rc, err = _run([*base, "--input", str(text)], capsys)
    assert rc == 2 and "not a readable HDF5 file" in err and str(text) in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_unknown_track_count_needs_a_head_name(tmp_path, capsys):
    path = str(tmp_path / "custom.h5")
    write_keras_h5(path, _random_published(SMALL.replace(heads=(("atac", 7),)), seed=4))
    (tmp_path / "cfg.json").write_text(json.dumps({**SMALL.to_dict(), "heads": {"human": 5313}}))
    argv = ["keras-to-jax", "--input", path, "--config", str(tmp_path / "cfg.json")]
    rc, err = _run([*argv, "--output", str(tmp_path / "a")], capsys)
    assert rc == 2 and "7 tracks" in err and "--head" in err
    rc, _ = _run([*argv, "--output", str(tmp_path / "b"), "--head", "atac"], capsys)
    assert rc == 0 and load_model(str(tmp_path / "b"))[0].cfg.head_tracks == {"atac": 7}


def test_format_is_told_by_content_and_partial_configs_take_published_values(tmp_path, io):
    """A Keras file without its suffix still reads as Keras; a config JSON giving only widths keeps
    the published GELU, BatchNorm and dilation rule (not the seed's)."""
    plain = tmp_path / "model_human"  # no .h5
    plain.write_bytes(open(os.path.join(FIXTURES, "basenji2_small_model.h5"), "rb").read())
    widths = {k: v for k, v in SMALL.to_dict().items()
              if k in ("variant", "seq_length", "stem_channels", "tower_init", "trunk_channels",
                       "bottleneck_channels", "final_channels", "heads")}
    (tmp_path / "widths.json").write_text(json.dumps(widths))
    ckpt = tmp_path / "ckpt"
    assert convert.main(["torch-to-jax", "--input", str(plain), "--output", str(ckpt), "--config",
                         str(tmp_path / "widths.json")]) == 0
    model, _ = load_model(str(ckpt))
    assert model.cfg == SMALL
    assert rel_err(Predictor(model, "human")(io["x"]), io["y"]) <= REL_TOL


def test_damaged_layer_groups_and_bad_configs_are_one_line(tmp_path, capsys):
    path = str(tmp_path / "m.h5")
    write_keras_h5(path, _random_published(SMALL, seed=5))
    with h5py.File(path, "a") as f:
        del f["model_weights/conv1d_4/conv1d_4/kernel:0"]  # listed in weight_names, gone
    (tmp_path / "cfg.json").write_text(SMALL.to_json())
    rc, err = _run(["keras-to-jax", "--input", path, "--config", str(tmp_path / "cfg.json"),
                    "--output", str(tmp_path / "o")], capsys)
    assert rc == 2 and "layer 'conv1d_4' is damaged or incomplete" in err
    (tmp_path / "bad.json").write_text("{not json")
    rc, err = _run(["keras-to-jax", "--input", path, "--config", str(tmp_path / "bad.json"),
                    "--output", str(tmp_path / "o")], capsys)
    assert rc == 2 and "bad.json: not a model config" in err
    (tmp_path / "seed.json").write_text(ModelConfig.tiny().to_json())
    rc, err = _run(["keras-to-jax", "--input", path, "--config", str(tmp_path / "seed.json"),
                    "--output", str(tmp_path / "o")], capsys)
    assert rc == 2 and "describes basenji2-double-prime, not basenji2" in err
