"""Train mode, full Basenji2 widths (32,768 bp, 128 output bins): batch-statistics
outputs, the Poisson loss, the updated running statistics, the gradient of the
loss w.r.t. every parameter, and SGD-momentum-0.99 steps, JAX vs torch_ref.

Dropout is 0 here: the frameworks cannot share a dropout RNG stream (JAX's
dropout has its own tests in tests/test_model.py).

Gradients, and why they are checked in float64. Through 17 train-mode
BatchNorms the early layers' weight gradients are ill-conditioned in float32:
torch_ref's own float32 gradients differ from its float64 gradients by up to
~5e-4 (Frobenius-relative) and 6e-3 (max-relative) in the stem and the first
tower blocks, so a 1e-4 float32 comparison between two frameworks would test
summation order, not the maths. The gradient parity is therefore proven in
float64 on both sides (same weights, same inputs) at max |Δ| <= 1e-6 * max |g|
per tensor; in float32 at full widths, the gradients of the parameters downstream of
the last pooling (dilated blocks, final block, head: no max-pool ties upstream) are
compared with torch's float32 gradients at 1e-4 * max |g|. The float64 tests use the
`tiny` widths: the same structure, and fast enough for XLA's float64 CPU convolutions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from jax_basenji.config import ModelConfig
from jax_basenji.convert import model_from_torch
from jax_basenji.losses import poisson_loss
from parity_tests.helpers import calibrated_torch_model, jax_params_as_torch, one_hot, rel_err
from torch_ref.losses import poisson_loss as torch_poisson_loss

LENGTH = 32_768
REL_TOL = 1e-4
BN_TOL = dict(rtol=1e-5, atol=1e-5)
F64_GRAD_TOL = 1e-6


def _targets(shape, seed):
    return np.random.default_rng(seed).gamma(1.0, 1.0, size=shape).astype(np.float32)


def _pair(variant, bn_momentum=0.9, float64=False):
    """(config, torch model, JAX model) with the same weights, both in train mode.

    With `float64`: the `tiny` preset (same structure: stem, 6 tower blocks,
    dilated residuals, crop, final, 2 heads; XLA's float64 CPU convolutions are
    too slow for full widths in CI), the torch model `.double()`, and the JAX
    model computing in float64 with float64 variables; use it inside
    `jax.enable_x64(True)`.
    """
    if variant == "basenji2":  # one head, as basenji2-pytorch; torch's unbiased running variance
        cfg = ModelConfig.preset("tiny-basenji2" if float64 else "basenji2", heads=(("human", 8 if float64 else 5313),),
                                 bn_unbiased_var=True)
    else:
        cfg = ModelConfig.tiny(variant=variant) if float64 else ModelConfig.preset(variant)
    cfg = cfg.replace(residual_dropout=0.0, final_dropout=0.0, bn_momentum=bn_momentum)
    tmodel = calibrated_torch_model(cfg, seed=8, calib_length=None if float64 else LENGTH)
    with jax.enable_x64(float64):  # float64 config: float64 variables, filled from torch's float32 weights
        jmodel = model_from_torch(tmodel.state_dict(), cfg.replace(dtype="float64" if float64 else "float32"))
        if float64:
            tmodel.double()
            floats = nnx.state(jmodel, nnx.Any(nnx.Param, nnx.BatchStat))
            nnx.update(jmodel, jax.tree.map(
                lambda a: jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, floats))
    tmodel.train()
    jmodel.train()
    return cfg, tmodel, jmodel


@nnx.jit
def _jax_loss_and_grads(model, x, y):
    return nnx.value_and_grad(lambda m: poisson_loss(m(x, "human"), y))(model)


@nnx.jit
def _jax_prediction_and_loss(model, x, y):
    pred = model(x, "human")
    return pred, poisson_loss(pred, y)


def _torch_loss_and_grads(tmodel, x, y):
    """Loss and {key: grad} of a torch model (float32 or float64)."""
    dtype = next(tmodel.parameters()).dtype
    pred = tmodel(torch.from_numpy(x).to(dtype), "human")
    loss = torch_poisson_loss(pred, torch.from_numpy(y).to(dtype))
    loss.backward()
    return pred.detach().numpy(), loss.item(), {k: p.grad for k, p in tmodel.named_parameters()}


def _is_pre_bn_conv_bias(key):
    """Conv biases followed by a train-mode BatchNorm: their true gradient is 0."""
    return key.endswith(".0.bias") and not key.startswith("output_heads") or key.endswith(".3.bias")


@pytest.mark.parametrize("variant,bn_momentum", [("basenji2-double-prime", 0.9), ("basenji2-prime", 0.99),
                                                 ("basenji2", 0.1)])
def test_train_outputs_loss_and_running_stats(variant, bn_momentum, record):
    cfg, tmodel, jmodel = _pair(variant, bn_momentum)
    x = one_hot(2, LENGTH, seed=9, n_fraction=0.01)
    y = _targets((2, 128, 5313), seed=10)
    with torch.no_grad():  # train mode still: batch statistics, running statistics updated
        tpred_t = tmodel(torch.from_numpy(x), "human")
        tloss = torch_poisson_loss(tpred_t, torch.from_numpy(y)).item()
    tpred = tpred_t.numpy()
    jpred, jloss = _jax_prediction_and_loss(jmodel, x, y)  # one forward: updates jmodel's statistics once

    record(f"full model, train (batch stats), {variant}", rel_err(jpred, tpred))
    record(f"loss, train, {variant}", abs(float(jloss) - tloss) / abs(tloss))
    assert rel_err(jpred, tpred) <= REL_TOL
    assert abs(float(jloss) - tloss) <= REL_TOL * abs(tloss)
    stats = jax_params_as_torch(nnx.to_pure_dict(nnx.state(jmodel, nnx.BatchStat)), cfg,
                                leaves=("mean", "var", "count"))
    tstate = tmodel.state_dict()
    assert len(stats) == 3 * 30  # mean, var, count of every BatchNorm
    for key, value in stats.items():
        np.testing.assert_allclose(value, tstate[key].numpy(), **BN_TOL, err_msg=key)
        record(f"running mean/var after one step, {variant}", rel_err(value, tstate[key].numpy()))


@pytest.mark.parametrize("variant", ["basenji2-double-prime", "basenji2-prime", "basenji2"])
def test_gradients_of_every_parameter_float64(variant, record):
    cfg, tmodel, jmodel = _pair(variant, float64=True)
    x = one_hot(2, cfg.seq_length, seed=11, n_fraction=0.01)
    y = _targets((2, cfg.target_length, cfg.head_tracks["human"]), seed=12)
    _, _, tgrads = _torch_loss_and_grads(tmodel, x, y)
    with jax.enable_x64(True):
        _, grads = _jax_loss_and_grads(jmodel, x, y)
        jgrads = jax_params_as_torch(nnx.to_pure_dict(grads), cfg)
    assert all(g.dtype == np.float64 for g in jgrads.values())
    # conv weight (+ bias in the seed's), BN weight and bias per block; Linear weight and bias per head
    per_block = 4 if cfg.conv_bias else 3
    want = per_block * (1 + 6 + 2 * cfg.dilated_layers + 1) + 2 * len(cfg.heads)
    assert set(jgrads) == set(tgrads) and len(jgrads) == want

    for key, g in jgrads.items():
        tg = tgrads[key]
        if tg is None:  # the unused mouse head: no grad in torch, zeros in JAX
            assert key.startswith("output_heads.heads.mouse") and not np.any(g), key
        elif _is_pre_bn_conv_bias(key):
            weight_scale = np.abs(jgrads[key[:-len("bias")] + "weight"]).max()
            assert np.abs(g).max() <= F64_GRAD_TOL * weight_scale, key
            assert np.abs(tg.numpy()).max() <= F64_GRAD_TOL * weight_scale, key
        else:
            record(f"gradients, float64, every parameter, {variant}", rel_err(g, tg.numpy()))
            assert rel_err(g, tg.numpy()) <= F64_GRAD_TOL, f"{key}: {rel_err(g, tg.numpy()):.2e}"


def test_float32_gradients_after_the_last_pooling(record):
    """Full widths, float32: dilated, final and head gradients within 1e-4 (max-relative)."""
    cfg, tmodel, jmodel = _pair("basenji2-double-prime")
    x = one_hot(2, LENGTH, seed=13, n_fraction=0.01)
    y = _targets((2, 128, 5313), seed=14)
    _, _, tgrads = _torch_loss_and_grads(tmodel, x, y)
    _, grads = _jax_loss_and_grads(jmodel, x, y)
    jgrads = jax_params_as_torch(nnx.to_pure_dict(grads), cfg)
    checked = [k for k in jgrads if k.startswith(("dilated_layers", "final_layers", "output_heads.heads.human"))
               and not _is_pre_bn_conv_bias(k)]
    assert len(checked) == 11 * 6 + 3 + 2
    for key in checked:
        record("gradients, float32, dilated/final/head, basenji2-double-prime",
               rel_err(jgrads[key], tgrads[key].numpy()))
        assert rel_err(jgrads[key], tgrads[key].numpy()) <= REL_TOL, key


def test_sgd_momentum_steps_give_the_same_weights(record):
    """Two SGD steps (lr 0.15, momentum 0.99, the paper's values) from the same
    weights, in float64 on `tiny` (see the module docstring), compared on the updates."""
    cfg, tmodel, jmodel = _pair("basenji2-double-prime", float64=True)
    lr, momentum = 0.15, 0.99
    topt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=momentum)
    before = {k: v.detach().clone().numpy() for k, v in tmodel.named_parameters()}

    with jax.enable_x64(True):
        jopt = nnx.Optimizer(jmodel, optax.sgd(lr, momentum=momentum), wrt=nnx.Param)

        @nnx.jit
        def jax_step(model, opt, x, y):
            loss, grads = nnx.value_and_grad(lambda m: poisson_loss(m(x, "human"), y))(model)
            opt.update(model, grads)
            return loss

        for step in range(2):  # the second step exercises the momentum buffer
            x = one_hot(2, cfg.seq_length, seed=20 + step)
            y = _targets((2, cfg.target_length, cfg.head_tracks["human"]), seed=30 + step)
            topt.zero_grad()
            _torch_loss_and_grads(tmodel, x, y)
            topt.step()
            jax_step(jmodel, jopt, x, y)
        after = jax_params_as_torch(nnx.to_pure_dict(nnx.state(jmodel, nnx.Param)), cfg)

    for key, tparam in tmodel.named_parameters():
        tdelta = tparam.detach().numpy() - before[key]
        jdelta = after[key] - before[key]
        if key.startswith("output_heads.heads.mouse"):  # no gradient: untouched on both sides
            assert not np.any(tdelta) and not np.any(jdelta), key
        elif _is_pre_bn_conv_bias(key):  # zero gradient: moves by rounding noise only
            assert np.abs(jdelta).max() <= F64_GRAD_TOL * np.abs(after[key]).max(), key
        else:
            record("SGD(0.99) weight updates, 2 steps, float64", rel_err(jdelta, tdelta))
            assert rel_err(jdelta, tdelta) <= F64_GRAD_TOL, f"{key}: {rel_err(jdelta, tdelta):.2e}"


def test_production_train_step_equals_the_seed_torch_loop(record):
    """`Trainer.train_step` — the training engine's own step — against the seed's torch loop, float64.

    Three rounds, each a human then a mouse batch through its own head: torch_ref in train
    mode, SGD(lr 0.15, momentum 0.99) over the whole model, `clip_grad_norm_(..., 2)`, Poisson
    loss, gradients set to None between steps (so the other head and its momentum buffer are
    skipped, as torch does). Compared after the last step: every parameter, every BatchNorm
    statistic, and the momentum buffers of the trunk and of both heads.
    """
    from jax_basenji.sharding import global_batch, make_mesh
    from jax_basenji.train_config import TrainConfig
    from jax_basenji.trainer import Trainer
    from torch_ref.losses import poisson_loss as torch_loss

    cfg = ModelConfig.tiny(residual_dropout=0.0, final_dropout=0.0, bn_momentum=0.99)
    tmodel = calibrated_torch_model(cfg, seed=21).double().train()
    tc = TrainConfig(species=("human", "mouse"), batch_size=2, optimizer="sgd", lr=0.15, momentum=0.99,
                     clip_norm=2.0, steps=3, augment=False)
    topt = torch.optim.SGD(tmodel.parameters(), lr=tc.lr, momentum=tc.momentum)
    rng = np.random.default_rng(22)
    with jax.enable_x64(True):
        mesh = make_mesh()
        jcfg = cfg.replace(dtype="float64")
        trainer = Trainer(jcfg, tc, mesh)
        arrays = model_from_torch({k: v.numpy() for k, v in tmodel.state_dict().items()}, jcfg)
        state = trainer.init_state(nnx.to_pure_dict(nnx.state(arrays, nnx.Any(nnx.Param, nnx.BatchStat))))
        assert state["params"]["stem"]["conv"]["kernel"].dtype == jnp.float64
        for r in range(1, tc.steps + 1):
            state["step"] = jnp.int32(r)
            for s in tc.species:
                x = one_hot(2, cfg.seq_length, seed=int(rng.integers(1 << 30)))
                y = rng.gamma(1.0, 1.0, (2, cfg.target_length, cfg.head_tracks[s])).astype(np.float32)
                topt.zero_grad()
                loss = torch_loss(tmodel(torch.from_numpy(x).double(), s), torch.from_numpy(y).double())
                loss.backward()
                torch.nn.utils.clip_grad_norm_(tmodel.parameters(), tc.clip_norm)
                topt.step()
                state, out = trainer.train_step(state, global_batch({"sequence": x, "target": y}, mesh), head=s)
                assert float(out["loss"]) == pytest.approx(loss.item(), rel=1e-10)
        jparams = jax_params_as_torch(jax.device_get(state["params"]), cfg)
        jstats = jax_params_as_torch(jax.device_get(state["batch_stats"]), cfg, leaves=("mean", "var", "count"))
        opt = jax.device_get(state["opt"])
        buffers = {**jax_params_as_torch(opt["trunk"][0].trace, cfg),
                   **{k: v for name in ("human", "mouse") for k, v in jax_params_as_torch(
                       {"heads": {name: opt["heads"][name][0].trace}}, cfg).items()}}

    tstate = tmodel.state_dict()
    for key, value in {**jparams, **jstats}.items():
        record("production train step vs seed torch loop, 3 rounds, float64", rel_err(value, tstate[key].numpy()))
        np.testing.assert_allclose(value, tstate[key].numpy(), rtol=1e-9, atol=1e-12, err_msg=key)
    names = dict(tmodel.named_parameters())
    assert set(buffers) == set(names)
    for key, buf in buffers.items():
        np.testing.assert_allclose(buf, topt.state[names[key]]["momentum_buffer"].numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"momentum buffer {key}")
    assert len(jstats) == 3 * (1 + cfg.tower_layers + 2 * cfg.dilated_layers + 1)  # every BatchNorm
