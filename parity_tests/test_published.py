"""The published Basenji2 against the real `basenji2-pytorch` package (PyPI, 0.1.2).

torch_ref's PublishedBasenji2 has the package's state_dict and, with the erf
GELU the package uses, its outputs bit for bit; a `.pth` saved from the
package converts and predicts at 131,072 bp within 1e-4 of max |y| of the
package's own output; converting back is bit-identical and loads strictly.
"""

import numpy as np
import pytest
import torch

from jax_basenji import convert, predict
from jax_basenji.checkpoint import load_model
from jax_basenji.config import ModelConfig
from parity_tests.helpers import (calibrated_package_model, one_hot, package_model, package_predict,
                                  rel_err)
from torch_ref import Basenji2 as SeedBasenji2
from torch_ref import PublishedBasenji2

REL_TOL = 1e-4


@pytest.fixture(scope="module")
def package():
    return calibrated_package_model(seed=1)


def test_torch_ref_is_the_package(package):
    ours = PublishedBasenji2(ModelConfig.basenji2(gelu="erf"))
    want = [(k, tuple(v.shape), v.dtype) for k, v in package.state_dict().items()]
    assert [(k, tuple(v.shape), v.dtype) for k, v in ours.state_dict().items()] == want
    assert len(want) == 182 and sum(int(np.prod(s)) for k, s, _ in want if "num_batches" not in k) == 30_123_584
    ours.load_state_dict(package.state_dict(), strict=True)
    ours.eval()
    x = one_hot(1, 32_768, seed=2, n_fraction=0.01)
    with torch.no_grad():
        got = ours(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, package_predict(package, x))


def test_basenji2_pth_converts_and_predicts_at_131072(package, tmp_path, record):
    """CLI: the package's .pth -> checkpoint (--gelu erf) -> predict at 131,072 bp -> back to .pth."""
    pth, ckpt, back = tmp_path / "basenji2.pth", tmp_path / "ckpt", tmp_path / "back.pth"
    torch.save(package.state_dict(), pth)
    # No --variant: the published layout is recognised from its keys.
    assert convert.main(["torch-to-jax", "--input", str(pth), "--output", str(ckpt), "--gelu", "erf"]) == 0
    model, _ = load_model(str(ckpt))
    assert (model.cfg.variant, model.cfg.gelu, model.cfg.head_tracks) == ("basenji2", "erf", {"human": 5313})

    x = one_hot(1, 131_072, seed=3, n_fraction=0.01)
    np.save(tmp_path / "x.npy", x)
    assert predict.main(["--checkpoint", str(ckpt), "--head", "human", "--input", str(tmp_path / "x.npy"),
                         "--output", str(tmp_path / "y.npy"), "--no-progress"]) == 0
    got, want = np.load(tmp_path / "y.npy"), package_predict(package, x)
    assert got.shape == want.shape == (1, 896, 5313) and want.std() > 1e-2
    record("basenji2-pytorch .pth, eval, 131072 bp (--gelu erf)", rel_err(got, want))
    assert rel_err(got, want) <= REL_TOL

    assert convert.main(["jax-to-torch", "--input", str(ckpt), "--output", str(back)]) == 0
    original, again = torch.load(pth, weights_only=True), torch.load(back, weights_only=True)
    assert list(again) == list(original)
    for key in original:
        assert again[key].dtype == original[key].dtype and torch.equal(again[key], original[key]), key
    package_model().load_state_dict(again, strict=True)


def test_default_gelu_is_the_published_sigmoid(package, tmp_path):
    pth = tmp_path / "basenji2.pth"
    torch.save(package.state_dict(), pth)
    assert convert.main(["torch-to-jax", "--variant", "basenji2", "--input", str(pth),
                         "--output", str(tmp_path / "c")]) == 0
    model, _ = load_model(str(tmp_path / "c"))
    assert model.cfg.gelu == "sigmoid"
    x = one_hot(1, 32_768, seed=4)
    # The package's erf GELU gives other numbers than the weights' own (sigmoid) form.
    assert rel_err(predict.Predictor(model, "human")(x), package_predict(package, x)) > 10 * REL_TOL


def test_layout_and_variant_mismatches_fail_in_one_line(package, tmp_path, capsys):
    pth, pt = tmp_path / "basenji2.pth", tmp_path / "seed.pt"
    torch.save(package.state_dict(), pth)
    torch.save(SeedBasenji2(ModelConfig.tiny()).state_dict(), pt)
    cases = [
        (["--variant", "basenji2-prime", "--input", str(pth)], "basenji2-pytorch (published Basenji2) layout"),
        (["--variant", "basenji2", "--input", str(pt)], "seed (Basenji2'/'') layout"),
    ]
    for args, message in cases:
        assert convert.main(["torch-to-jax", *args, "--output", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    sd = package.state_dict()
    sd["model.trunk.1.tower.2.block.1.weight"] = torch.zeros(470, 399, 3)
    torch.save(sd, pth)
    assert convert.main(["torch-to-jax", "--input", str(pth), "--output", str(tmp_path / "o")]) == 2
    assert "model.trunk.1.tower.2.block.1.weight has shape (470, 399, 3), expected (470, 399, 5)" in \
        capsys.readouterr().err
    assert not (tmp_path / "o").exists()
