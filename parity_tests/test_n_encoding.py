"""The seed's N encoding: a model trained by the seed code read sequences from FASTA through
kipoiseq's `one_hot_dna`, where N = 0.25 in every channel. A seed `.pt` converted here records
0.25, and `predict regions` on the FASTA then matches the seed's own pipeline (torch on the
kipoiseq encoding, reproduced below with numpy) — and only with 0.25."""

import h5py
import numpy as np
import pytest
import torch

from jax_basenji import convert
from jax_basenji.checkpoint import read_meta
from jax_basenji.config import ModelConfig
from jax_basenji.predict import main as predict_main
from parity_tests.helpers import calibrated_torch_model, rel_err

L = 16_384
REL_TOL = 1e-4


def kipoiseq_one_hot(seq: str) -> np.ndarray:
    """kipoiseq's `one_hot_dna` (ACGT order, upper-case): N (any other letter) is 0.25 in every channel."""
    codes = np.frombuffer(seq.upper().encode(), np.uint8)
    x = np.stack([codes == ord(b) for b in "ACGT"], axis=-1).astype(np.float32)
    x[x.sum(axis=-1) == 0] = 0.25
    return x


def seed_window(chrom: str, start: int, end: int) -> str:
    """The seed's resize: centred on the interval, `N` beyond the chromosome's ends."""
    mid = (start + end) // 2
    return "".join(chrom[i] if 0 <= i < len(chrom) else "N" for i in range(mid - L // 2, mid + L // 2))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("n_encoding")
    rng = np.random.default_rng(1)
    chrom = "".join(rng.choice(list("ACGT"), 30_000))
    chrom = chrom[:12_000] + "N" * 2_000 + chrom[14_000:]  # an assembly gap inside the first window
    (root / "g.fa").write_text(">chr1\n" + chrom + "\n")
    cfg = ModelConfig.tiny(heads={"human": 8})
    model = calibrated_torch_model(cfg, seed=4, calib_length=L)
    torch.save(model.state_dict(), root / "seed.pt")
    (root / "tiny.json").write_text(cfg.to_json())
    assert convert.main(["torch-to-jax", "--input", str(root / "seed.pt"), "--output", str(root / "ckpt"),
                         "--variant", "basenji2-double-prime", "--config", str(root / "tiny.json")]) == 0
    rows = [("chr1", 11_000, 15_000), ("chr1", 29_000, 30_000)]  # the gap; the chromosome's end
    (root / "r.bed").write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in rows))
    x = np.stack([kipoiseq_one_hot(seed_window(chrom, s, e)) for _, s, e in rows])
    with torch.no_grad():
        seed_pred = model(torch.from_numpy(x), "human").numpy()
    return {"root": root, "seed_pred": seed_pred}


def _ours(world, *flags) -> np.ndarray:
    root = world["root"]
    out = root / f"preds{len(flags)}.h5"
    assert predict_main(["regions", "--checkpoint", str(root / "ckpt"), "--head", "human", "--fasta",
                         str(root / "g.fa"), "--bed", str(root / "r.bed"), "--output", str(out), "--overwrite",
                         "--no-progress", *flags]) == 0
    with h5py.File(out) as h5:
        return h5["preds"][:]


def test_a_converted_seed_pt_records_and_uses_n_025(world, record):
    assert read_meta(str(world["root"] / "ckpt"))["n_value"] == 0.25
    err = rel_err(_ours(world), world["seed_pred"])
    record("seed FASTA pipeline (N = 0.25) vs predict regions, rel", err)
    assert err < REL_TOL


def test_the_tfrecord_encoding_n_0_does_not_match_the_seed(world):
    assert rel_err(_ours(world, "--n-value", "0"), world["seed_pred"]) > 100 * REL_TOL
