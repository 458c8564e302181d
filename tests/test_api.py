"""The Python API (jax_basenji.api): the README's "From Python" example runs as written, and its results
are those of the commands and of the model on independently built inputs."""

from __future__ import annotations

import os
import re

import h5py
import numpy as np
import pytest
import torch

import jax_basenji as jb
from jax_basenji.checkpoint import save_model
from jax_basenji.config import ModelConfig
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import read_targets_file
from jax_basenji.data.store import convert
from jax_basenji.data.synth import SynthConfig, synth
from jax_basenji.errors import InputError
from jax_basenji.model import build_model
from jax_basenji.predict.core import Predictor
from jax_basenji.variants.__main__ import main as variants_main
from torch_ref import Basenji2 as TorchBasenji2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
L = 16_384


def readme_example() -> str:
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.search(r"<!-- from-python -->\n```python\n(.*?)```", text, re.S).group(1)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """What the demo leaves behind, small: synthetic data in runs/cache, a model in runs/demo_train."""
    root = tmp_path_factory.mktemp("api")
    cache = root / "runs" / "cache"
    synth(str(cache / "synth-v3"), {"human": 8, "mouse": 4},
          SynthConfig(seq_length=L, examples=(("train", 16), ("valid", 8), ("test", 8)), seed=1), progress=False)
    convert(str(cache / "synth-v3"), str(cache / "store-v3"), progress=False)
    targets = {s: read_targets_file(str(cache / "synth-v3" / s / "targets.txt")) for s in ("human", "mouse")}
    save_model(str(root / "runs" / "demo_train" / "model_best"), build_model(ModelConfig.tiny(), seed=2),
               extra={"head_targets": targets})
    g = Genome(str(cache / "synth-v3" / "hg38.ml.fa"))
    rows = [("chr1", 40_010), ("chr1", 40_300), ("chr2", 20_064)]
    with open(root / "variants.vcf", "w") as f:
        f.write("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for k, (chrom, pos) in enumerate(rows):
            ref = "ACGT"[int(g.fetch(chrom, pos - 1, pos)[0])]
            f.write(f"{chrom}\t{pos}\trs{k}\t{ref}\t{'C' if ref != 'C' else 'G'}\t.\t.\t.\n")
    return root


@pytest.fixture(scope="module")
def example(demo_dir):
    """The README example's variables after running it in the demo's folder."""
    cwd = os.getcwd()
    os.chdir(demo_dir)
    try:
        scope: dict = {}
        exec(compile(readme_example(), "README.md (From Python)", "exec"), scope)
    finally:
        os.chdir(cwd)
    return scope


def test_the_readme_example_runs_and_returns_what_it_says(example, demo_dir):
    model, tracks = example["model"], example["tracks"]
    cage = list(tracks.index[tracks["assay"] == "CAGE"])
    bins = model.model.cfg.output_bins(L)
    assert example["y"].shape == (2, bins, len(cage)) and example["x"].shape == (1, bins, 8)
    assert example["ism"].shape == (20, 4) and list(example["ism"].index) == list(range(40_000, 40_020))
    assert example["grads"].shape == (20, 4)
    assert list(example["scores"]["variant"]["snp"]) == ["rs0", "rs1", "rs2"]
    assert example["scores"]["SAD"].shape == (3, 8)
    assert (demo_dir / "chr1_40k.png").stat().st_size > 5000 and (demo_dir / "ism.png").stat().st_size > 5000
    assert example["again"].heads == ["human", "mouse", "again"]


def test_intervals_are_predicted_on_the_centred_window_as_a_one_hot_array_would_be(example, demo_dir):
    model, genome = example["model"], str(demo_dir / example["genome"])
    index = Genome(genome).fetch("chr1", 40_064 - L // 2, 40_064 + L // 2)
    one_hot = np.eye(5, 4, dtype=np.float32)[index]
    np.testing.assert_allclose(model.predict("chr1:40,000-40,128", genome=genome),
                               model.predict(one_hot), rtol=1e-5, atol=1e-6)
    text = "".join("ACGTN"[i] for i in index)
    np.testing.assert_array_equal(model.predict(text.lower()), model.predict(one_hot))
    assert model.predict([one_hot, one_hot[::-1]]).shape == (2, *model.predict(one_hot).shape[1:])


def test_variant_scores_are_those_of_the_command(example, demo_dir, tmp_path):
    args = ["score", "--checkpoint", str(demo_dir / "runs/demo_train/model_best"), "--head", "human",
            "--fasta", str(demo_dir / example["genome"]), "--vcf", str(demo_dir / "variants.vcf"),
            "--output", str(tmp_path / "v.h5"), "--float32", "--no-progress"]
    assert variants_main(args) == 0
    with h5py.File(tmp_path / "v.h5") as h5:
        np.testing.assert_allclose(example["scores"]["SAD"].to_numpy(), h5["SAD"][:], rtol=1e-5, atol=1e-6)
        assert list(example["scores"]["variant"]["pos"]) == list(h5["pos"][:])


def test_ism_is_the_change_of_the_mean_prediction_for_one_base(example, demo_dir):
    model, genome = example["model"], str(demo_dir / example["genome"])
    ism, pos, window = example["ism"], 40_005, 40_010 - L // 2
    seq = model.sequences("chr1:40,000-40,020", genome)[0][0]
    ref = "ACGT"[seq[pos - window]]
    alt = next(b for b in "ACGT" if b != ref)
    mutated = seq.copy()
    mutated[pos - window] = "ACGT".index(alt)
    columns = model.columns("human", ["CAGE"])
    ref_pred = model.predict(np.eye(5, 4, dtype=np.float32)[seq])[..., columns]
    want = (model.predict(np.eye(5, 4, dtype=np.float32)[mutated])[..., columns].mean(dtype=np.float64)
            - ref_pred.mean(dtype=np.float64))
    assert ism.loc[pos, ref] == 0
    # a difference of two means: fp32 rounding of the predictions, relative to their size
    np.testing.assert_allclose(ism.loc[pos, alt], want, rtol=0, atol=1e-5 * np.abs(ref_pred).max())


def test_a_seed_checkpoint_is_predicted_with_its_own_n_encoding(tmp_path):
    """A seed .pt was trained with N = 0.25: an N in a DNA string reaches the model as 0.25 (the old
    `Predictor(model, head)` default of 0 was silently wrong for it)."""
    cfg = ModelConfig.tiny()
    torch.manual_seed(0)
    seed_model = TorchBasenji2(cfg)
    with torch.no_grad():  # BatchNorm statistics of real activations, as a trained model has
        seed_model(torch.from_numpy(np.eye(4, dtype=np.float32)[np.random.default_rng(1).integers(0, 4, (2, L))]))
    torch.save(seed_model.state_dict(), tmp_path / "seed.pt")
    model = jb.load(str(tmp_path / "seed.pt"), variant=cfg.variant, widths="tiny")
    assert model.n_value == 0.25
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("ACGT"), L))
    text = text[:5000] + "N" * 2000 + text[7000:]
    one_hot = np.eye(5, 4, dtype=np.float32)[["ACGTN".index(c) for c in text]]
    as_zeros = Predictor(model.model, "human")(one_hot[None])
    one_hot[5000:7000] = 0.25
    got = model.predict(text)
    np.testing.assert_allclose(got, Predictor(model.model, "human")(one_hot[None]), rtol=1e-5, atol=1e-6)
    assert np.abs(got - as_zeros).max() > 1e-3  # the encoding matters: this test can tell them apart


def test_bad_inputs_get_one_line_errors(example, demo_dir):
    model = example["model"]
    with pytest.raises(InputError, match="position 2"):
        model.predict("ACX" + "A" * (L - 3))
    with pytest.raises(InputError, match="genome="):
        model.predict("chr1:40,000-40,128")
    with pytest.raises(InputError, match="unknown head 'rat'"):
        model.predict("A" * L, "rat")
    with pytest.raises(InputError, match="different lengths"):
        model.predict(["A" * L, "A" * (L - 128)])
    with pytest.raises(InputError, match="no such model file"):
        jb.load(str(demo_dir / "missing.pth"))
