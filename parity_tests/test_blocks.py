"""Each block of the JAX model equals its torch_ref counterpart (rtol = atol = 1e-5).

Blocks run at the real Basenji2 widths on the activations the torch model
itself produces for random DNA (not on arbitrary noise), in eval mode and in
train mode (batch statistics, then the updated running mean/var).
"""

import copy

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jax_basenji.config import ModelConfig
from jax_basenji.convert import model_from_torch
from parity_tests.helpers import calibrated_torch_model, jax_params_as_torch, one_hot, rel_err

LENGTH = 32_768  # 256 bins before the crop: every block at full width, 1/4 of the cost
TOL = dict(rtol=1e-5, atol=1e-5)


def _torch_blocks(tmodel):
    """(name, fn on channels-first `(B, C, L)`) for every block, in network order."""
    if tmodel.cfg.variant == "basenji2":  # basenji2-pytorch's tree: trunk = stem, tower, residuals, crop, final, GELU
        trunk = tmodel.model.trunk
        return ([("stem", trunk[0])] + [(f"tower.{i}", b) for i, b in enumerate(trunk[1].tower)]
                + [(f"dilated.{i}", b) for i, b in enumerate(trunk[2].block)]
                + [("final", torch.nn.Sequential(trunk[4], trunk[5]))])
    stack = tmodel.dilated_layers
    return ([("stem", tmodel.conv_stem)]
            + [(f"tower.{i}", block) for i, block in enumerate(tmodel.conv_layers.conv_layers)]
            + [(f"dilated.{i}", (lambda x, i=i: stack.forward_block(i, x)))
               for i in range(len(stack.dilated_layers))]
            + [("final", tmodel.final_layers)])


def _jax_blocks(jmodel):
    """The same blocks of the JAX model (channels-last `[B, L, C]`), same order."""
    return [jmodel.stem, *jmodel.tower, *jmodel.dilated, jmodel.final]


def _block_inputs(tmodel, x):
    """Torch activations entering each block (the crop happens before `final`)."""
    inputs = []
    with torch.no_grad():
        h = torch.from_numpy(x).transpose(1, 2)
        for name, fn in _torch_blocks(tmodel):
            if name == "final":
                crop = tmodel.cfg.crop_bins
                h = h[:, :, crop:h.shape[-1] - crop]
            inputs.append(h)
            h = fn(h)
    return inputs


@nnx.jit  # one program per block (dilation, form, shape), not one per primitive
def _apply(block, h):
    return block(h)


def _compare_blocks(tmodel, jmodel, inputs, mode, record, truth=None):
    """Each JAX block against torch_ref's on the same input.

    Eval mode: elementwise with torch's float32 output. Train mode (`truth`, a
    float64 copy of the torch model): against the float64 output, max |Δ| <=
    1e-5 * max |y|. Batch statistics over 512 positions amplify float32 rounding:
    in the published form (no activation after the residual add) torch's own
    float32 output is up to 8.6e-6 * max |y| (4e-5 absolute) away from float64,
    so comparing two float32 implementations would test summation order.
    The float32 torch blocks still run, to update their running statistics.
    """
    truth_blocks = _torch_blocks(truth) if truth is not None else None
    for i, ((name, tfn), jfn, h) in enumerate(zip(_torch_blocks(tmodel), _jax_blocks(jmodel), inputs, strict=True)):
        with torch.no_grad():
            want = tfn(h).transpose(1, 2).numpy()
        got = np.asarray(_apply(jfn, jnp.asarray(h.transpose(1, 2).numpy())))
        if truth is None:
            np.testing.assert_allclose(got, want, **TOL, err_msg=f"block {name} ({mode} mode)")
            record(f"blocks, {mode} mode, {tmodel.cfg.variant}", rel_err(got, want))
            continue
        with torch.no_grad():
            ref = truth_blocks[i][1](h.double()).transpose(1, 2).numpy()
        record(f"blocks, {mode} mode vs float64, {tmodel.cfg.variant}", rel_err(got, ref))
        record(f"blocks, {mode} mode vs float64, torch_ref float32, {tmodel.cfg.variant}", rel_err(want, ref))
        assert rel_err(got, ref) <= TOL["rtol"], f"block {name} ({mode} mode): {rel_err(got, ref):.2e}"


@pytest.fixture(scope="module", params=["basenji2-double-prime", "basenji2-prime", "basenji2"])
def models(request):
    cfg = ModelConfig.preset(request.param, residual_dropout=0.0, final_dropout=0.0)
    if request.param == "basenji2":  # torch's BatchNorm keeps the unbiased variance (Keras' rule: test_keras.py)
        cfg = cfg.replace(bn_unbiased_var=True)
    tmodel = calibrated_torch_model(cfg, seed=1, calib_length=LENGTH)
    x = one_hot(2, LENGTH, seed=7, n_fraction=0.01)
    return tmodel, x, _block_inputs(tmodel, x)


def test_blocks_eval_mode(models, record):
    tmodel, _, inputs = models
    jmodel = model_from_torch(tmodel.state_dict(), tmodel.cfg)
    jmodel.eval()
    _compare_blocks(tmodel, jmodel, inputs, "eval", record)


def test_head_eval_mode(models):
    tmodel, _, inputs = models
    jmodel = model_from_torch(tmodel.state_dict(), tmodel.cfg)
    jmodel.eval()
    with torch.no_grad():
        final = _torch_blocks(tmodel)[-1][1]
        h = final(inputs[-1])
        for name in tmodel.cfg.head_tracks:
            if tmodel.cfg.variant == "basenji2":
                want = tmodel.model.head(h).numpy()
            else:
                want = tmodel.output_heads(h.transpose(1, 2), name).numpy()
            got = np.asarray(jmodel.heads[name](jnp.asarray(h.transpose(1, 2).numpy())))
            np.testing.assert_allclose(got, want, **TOL, err_msg=f"head {name}")


def test_blocks_train_mode_outputs_and_running_stats(models, record):
    """Batch-statistics outputs, then every BN's running mean/var/count after that step."""
    tmodel, _, inputs = models
    jmodel = model_from_torch(tmodel.state_dict(), tmodel.cfg)
    jmodel.train()
    truth = copy.deepcopy(tmodel).double().train()
    tmodel.train()
    try:
        _compare_blocks(tmodel, jmodel, inputs, "train", record, truth)
        stats = jax_params_as_torch(nnx.to_pure_dict(nnx.state(jmodel, nnx.BatchStat)), tmodel.cfg,
                                    leaves=("mean", "var", "count"))
        tstate = tmodel.state_dict()
        assert len(stats) == 3 * (2 + 6 + 2 * 11)  # 3 stats x every BatchNorm
        for key, value in stats.items():
            np.testing.assert_allclose(value, tstate[key].numpy(), **TOL, err_msg=key)
    finally:
        tmodel.eval()
