"""The whole JAX model equals torch_ref in eval mode: max |Δ| <= 1e-4 * max |y|.

Weights come from a torch model whose BatchNorm statistics were set by
train-mode passes on random DNA, converted with the production converter.
"""

import pytest
import torch

from jax_basenji.config import ModelConfig
from jax_basenji.convert import model_from_torch
from jax_basenji.predict import Predictor
from parity_tests.helpers import calibrated_torch_model, one_hot, rel_err

REL_TOL = 1e-4
VARIANTS = ["basenji2-double-prime", "basenji2-prime"]


def _eval_outputs(tmodel, x, head):
    jmodel = model_from_torch(tmodel.state_dict(), tmodel.cfg)
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x), head).numpy()
    return Predictor(jmodel, head)(x), want


@pytest.mark.parametrize("variant", [*VARIANTS, "basenji2"])
def test_full_length_131072_eval(variant, record):
    cfg = ModelConfig.preset(variant)
    tmodel = calibrated_torch_model(cfg, seed=2, calib_length=32_768)
    x = one_hot(1, 131_072, seed=3, n_fraction=0.01)
    got, want = _eval_outputs(tmodel, x, "human")
    assert got.shape == want.shape == (1, 896, 5313)
    assert want.std() > 1e-2  # a meaningful, non-constant output
    record(f"full model, eval, 131072 bp, {variant}", rel_err(got, want))
    assert rel_err(got, want) <= REL_TOL


@pytest.fixture(scope="module", params=VARIANTS)
def short_model(request):
    cfg = ModelConfig.preset(request.param)
    return calibrated_torch_model(cfg, seed=4, calib_length=32_768)


@pytest.mark.parametrize("length,head", [(32_768, "human"), (32_768, "mouse"), (20_480, "human")])
def test_shorter_lengths_eval(short_model, length, head, record):
    """Any multiple of 128 bp with bins left after the crop: 128 and 32 output bins here."""
    x = one_hot(2, length, seed=5)
    got, want = _eval_outputs(short_model, x, head)
    assert got.shape == want.shape == (2, length // 128 - 128, short_model.cfg.head_tracks[head])
    record(f"full model, eval, 20480-32768 bp, {short_model.cfg.variant}", rel_err(got, want))
    assert rel_err(got, want) <= REL_TOL


def test_tolerance_tells_the_gelu_forms_apart():
    """The published weights under another GELU form (sigmoid vs erf): the 1e-4 tolerance must flag it."""
    cfg = ModelConfig.basenji2(gelu="sigmoid")
    tmodel = calibrated_torch_model(cfg, seed=6, calib_length=32_768)
    x = one_hot(1, 32_768, seed=7)
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x)).numpy()
    for gelu in ("erf", "tanh"):
        jmodel = model_from_torch(tmodel.state_dict(), cfg.replace(gelu=gelu))
        assert rel_err(Predictor(jmodel, "human")(x), want) > 10 * REL_TOL, gelu


def test_tolerance_tells_the_variants_apart():
    """Same weights, other residual variant: the 1e-4 tolerance must flag it."""
    prime = calibrated_torch_model(ModelConfig.basenji2_prime(), seed=6, calib_length=32_768)
    jmodel = model_from_torch(prime.state_dict(), ModelConfig.basenji2_double_prime())
    x = one_hot(1, 32_768, seed=7)
    with torch.no_grad():
        want = prime(torch.from_numpy(x), "human").numpy()
    assert rel_err(Predictor(jmodel, "human")(x), want) > 100 * REL_TOL
