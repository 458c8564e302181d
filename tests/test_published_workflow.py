"""Every command takes the published Basenji2: a Keras `.h5` and a basenji2-pytorch `.pth`.

At the `tiny-basenji2` preset's widths (same block form, 16,384 bp, small enough for
CI): the `.h5` was written by real Keras (tests/fixtures/keras/basenji2_tiny_model.h5,
with Keras' own predictions), the `.pth` by the real basenji2-pytorch package.
Fine-tuning starts from either file directly; the converted checkpoint predicts,
evaluates (positions, TSS, ridge, attribution); `train --model tiny-basenji2` trains
the published form from scratch with Keras' initialisation.
"""

import os

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from flax.traverse_util import flatten_dict

from jax_basenji import checkpoint, convert, finetune, predict
from jax_basenji import train as train_cli
from jax_basenji.config import ModelConfig
from jax_basenji.convert.foreign import read_weights
from jax_basenji.data.layout import read_bed_file
from jax_basenji.data.store import convert as convert_store
from jax_basenji.data.synth import SynthConfig, synth
from jax_basenji.evaluate.__main__ import main as evaluate_main
from jax_basenji.model import build_model
from parity_tests.helpers import calibrated_package_model


def read_as(path, cfg):
    """Read a published file as `cfg` (the production reader, format told by content)."""
    return read_weights(path, cfg.variant, lambda _: cfg)


KERAS_TINY = os.path.join(os.path.dirname(__file__), "fixtures", "keras", "basenji2_tiny_model.h5")
KERAS_IO = os.path.join(os.path.dirname(__file__), "fixtures", "keras", "basenji2_small_io.npz")
SEQ = 16_384
TINY = ModelConfig.preset("tiny-basenji2")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    basenji = str(root / "basenji")
    synth(basenji, {"human": 8, "mouse": 4}, SynthConfig(
        seq_length=SEQ, examples=(("train", 8), ("valid", 4), ("test", 4)), records_per_file=8), progress=False)
    convert_store(basenji, str(root / "store"), progress=False)
    pth = str(root / "basenji2_tiny.pth")
    torch.save(calibrated_package_model(TINY, seed=5, length=SEQ).state_dict(), pth)
    (root / "tiny.json").write_text(TINY.to_json())
    ckpt = str(root / "keras_ckpt")
    assert convert.main(["keras-to-jax", "--input", KERAS_TINY, "--output", ckpt,
                         "--config", str(root / "tiny.json")]) == 0
    return {"root": root, "basenji": basenji, "store": str(root / "store"), "pth": pth, "ckpt": ckpt,
            "fasta": os.path.join(basenji, "hg38.ml.fa")}


def test_converted_keras_file_predicts_like_keras(world, tmp_path):
    io = np.load(KERAS_IO)
    np.save(tmp_path / "x.npy", io["tiny_x"])
    assert predict.main(["--checkpoint", world["ckpt"], "--head", "human", "--input", str(tmp_path / "x.npy"),
                         "--output", str(tmp_path / "y.npy"), "--no-progress"]) == 0
    got, want = np.load(tmp_path / "y.npy"), io["tiny_y"]
    assert got.shape == want.shape == (2, 112, 8)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize("which", ["h5", "pth"])
def test_finetune_starts_from_the_published_file(world, which):
    """`finetune --pretrained model.h5|basenji2.pth`: a new mouse head; the file's head stays frozen."""
    pretrained = KERAS_TINY if which == "h5" else world["pth"]
    workdir = str(world["root"] / f"ft_{which}")
    assert finetune.main(["--pretrained", pretrained, "--widths", "tiny", "--data", world["store"],
                          "--species", "mouse", "--head-name", "ft", "--workdir", workdir, "--steps", "2",
                          "--batch-size", "2", "--eval-batches", "1", "--eval-every", "2",
                          "--no-progress"]) == 0
    arrays, cfg, _ = checkpoint.load_arrays(os.path.join(workdir, "model"))
    assert (cfg.variant, cfg.gelu, cfg.head_tracks) == ("basenji2", "sigmoid", {"human": 8, "ft": 4})
    if which == "h5":
        source, _, _ = read_as(KERAS_TINY, TINY)
    else:
        source, _, _ = read_as(world["pth"], TINY)
    before, after = flatten_dict(source), flatten_dict(arrays)
    for path in [p for p in before if p[0] == "heads"]:
        np.testing.assert_array_equal(after[path], before[path], err_msg=str(path))  # frozen old head
    trunk = [p for p in before if p[0] != "heads" and p[-1] == "kernel"]
    assert any(not np.array_equal(after[p], before[p]) for p in trunk)  # the trunk trained


def test_evaluate_from_the_published_checkpoint(world, tmp_path):
    """positions (with an rc/shift ensemble), TSS from the genome, ridge and attribution."""
    common = ["--checkpoint", world["ckpt"], "--head", "human", "--no-progress"]
    assert evaluate_main(["positions", *common, "--data", world["store"], "--species", "human",
                          "--output", str(tmp_path / "pos"), "--rc", "--shifts", "-1", "0", "1"]) == 0
    assert os.path.exists(tmp_path / "pos" / "positions_summary.json")

    regions = read_bed_file(os.path.join(world["basenji"], "human", "sequences.bed"))
    genes = tmp_path / "genes.tsv"
    rows = [(f"g{k}", r.chrom, r.start + SEQ // 2 + 100 * k, "+-"[k % 2], r.subset) for k, r in enumerate(regions)]
    genes.write_text("gene_id\tchrom\ttss\tstrand\tsubset\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    assert evaluate_main(["tss", *common, "--fasta", world["fasta"], "--genes", str(genes),
                          "--output", str(tmp_path / "tss")]) == 0
    expression = tmp_path / "expr.tsv"
    rng = np.random.default_rng(0)
    expression.write_text("gene_id\tcellA\tcellB\n" + "".join(
        f"{r[0]}\t{rng.gamma(2, 3):.3f}\t{rng.gamma(2, 3):.3f}\n" for r in rows))
    assert evaluate_main(["ridge", "--predictions", str(tmp_path / "tss" / "tss_predictions.tsv"),
                          "--expression", str(expression), "--tracks", "0", "1", "2",
                          "--output", str(tmp_path / "ridge")]) == 0
    r = regions[0]
    assert evaluate_main(["attribution", "--checkpoint", world["ckpt"], "--head", "human", "--fasta",
                          world["fasta"], "--region", f"{r.chrom}:{r.start}-{r.end}", "--tracks", "0",
                          "--output", str(tmp_path / "attr")]) == 0
    assert np.abs(np.load(tmp_path / "attr" / "attribution.npy")).max() > 0


def test_train_the_published_form_from_scratch(world):
    workdir = str(world["root"] / "train")
    assert train_cli.main(["--data", world["store"], "--model", "tiny-basenji2", "--workdir", workdir,
                           "--steps", "2", "--batch-size", "2", "--eval-batches", "1", "--eval-every", "2",
                           "--no-progress"]) == 0
    model, _ = checkpoint.load_model(os.path.join(workdir, "model"))
    assert (model.cfg.variant, model.cfg.gelu, model.cfg.bn_eps, model.cfg.conv_bias) == \
        ("basenji2", "sigmoid", 1e-3, False)


def test_keras_initialisation():
    """he_normal kernels (std sqrt(2 / fan_in), truncated) and each residual branch starting as identity."""
    model = build_model(ModelConfig.preset("tiny-basenji2"), seed=0)
    for block in model.dilated:
        assert not np.any(block.bn2.scale[...]) and np.all(block.bn1.scale[...] == 1)
    kernel = np.asarray(model.tower[5].conv.kernel[...])  # [5, 35, 41]: fan_in 175
    assert kernel.std() == pytest.approx(np.sqrt(2 / 175), rel=0.1)
    assert np.abs(kernel).max() <= 2 * np.sqrt(2 / 175) / 0.87962566 + 1e-6  # truncated at 2 std
    x = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (1, SEQ))]
    model.eval()
    residual_in = model.tower[5](model.tower[4](model.tower[3](model.tower[2](
        model.tower[1](model.tower[0](model.stem(x)))))))
    np.testing.assert_array_equal(model.dilated[0](residual_in), residual_in)  # x + 0 * branch
    assert {v.dtype for v in jax.tree.leaves(nnx.state(model, nnx.Param))} == {np.dtype("float32")}
