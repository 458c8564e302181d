"""The Flax model's own behaviour: shapes, BatchNorm rule, train/eval, dropout, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jax_basenji.config import ModelConfig
from jax_basenji.model import BatchNorm, build_model, compute_layout
from jax_basenji.ops import GELUS, gelu_erf, softplus
from tests.forward import forward


def _x(batch=2, length=16_384, seed=0):
    idx = np.random.default_rng(seed).integers(0, 4, (batch, length))
    return jnp.asarray(np.eye(4, dtype=np.float32)[idx])


def test_output_shapes_for_every_head():
    model = build_model(ModelConfig.tiny())
    model.eval()
    assert nnx.eval_shape(lambda m: m(_x(), "human"), model).shape == (2, 112, 8)
    assert nnx.eval_shape(lambda m: m(_x(), "mouse"), model).shape == (2, 112, 4)
    assert nnx.eval_shape(lambda m: m.embed(_x()), model).shape == (2, 112, 48)
    with pytest.raises(KeyError, match="unknown head 'rat'"):
        model(_x(), "rat")


def test_parameter_count_of_full_basenji2():
    abstract = nnx.eval_shape(lambda: build_model(ModelConfig()))
    assert sum(v.size for v in jax.tree.leaves(nnx.state(abstract, nnx.Param))) == 32_618_976


def test_batchnorm_uses_torch_momentum_and_unbiased_running_variance():
    bn = BatchNorm(3, momentum=0.9, eps=1e-5)
    x = jnp.asarray(np.random.default_rng(0).normal(2.0, 3.0, (4, 5, 3)), jnp.float32)
    y = bn(x)
    flat = np.asarray(x).reshape(-1, 3)
    np.testing.assert_allclose(bn.mean[...], 0.1 * 0 + 0.9 * flat.mean(0), rtol=1e-6)
    np.testing.assert_allclose(bn.var[...], 0.1 * 1 + 0.9 * flat.var(0, ddof=1), rtol=1e-6)
    assert int(bn.count[...]) == 1
    # normalised with the *biased* batch variance
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 3),
                               (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5), rtol=1e-5, atol=1e-5)


def test_eval_mode_uses_and_keeps_running_statistics():
    model = build_model(ModelConfig.tiny())
    model.train()
    forward(model, _x())
    model.eval()
    before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))
    one, other = _x(seed=1)[:1], _x(seed=2)[:1]
    alone, in_batch = forward(model, one)[0], forward(model, np.concatenate([one, other]))[0]
    after = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))
    assert all(np.array_equal(p, q) for p, q in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
    # Running statistics: an example's output does not depend on the rest of its batch ...
    np.testing.assert_allclose(alone, in_batch, rtol=1e-5, atol=1e-6)
    model.train()  # ... while batch statistics make it depend
    alone, in_batch = forward(model, one)[0], forward(model, np.concatenate([one, other]))[0]
    assert not np.allclose(alone, in_batch, rtol=1e-3)


def test_dropout_is_active_in_train_mode_and_reproducible_from_the_seed():
    cfg = ModelConfig.tiny(residual_dropout=0.3, final_dropout=0.05)
    outs = []
    for seed in (0, 0, 1):
        model = build_model(cfg, seed=0)
        model.train()
        outs.append(np.asarray(forward(model, _x(), rngs=nnx.Rngs(dropout=seed))))
    np.testing.assert_array_equal(outs[0], outs[1])  # same dropout seed, same result
    assert not np.allclose(outs[0], outs[2])  # another dropout seed, other masks
    model = build_model(cfg, seed=0)
    model.train()
    no_drop = build_model(cfg.replace(residual_dropout=0.0, final_dropout=0.0), seed=0)
    no_drop.train()
    assert not np.allclose(forward(model, _x()), forward(no_drop, _x()))


def test_gelu_forms():
    """erf and tanh as torch computes them; sigmoid as basenji's layers.GELU did when Basenji2 was trained."""
    import torch

    x = np.linspace(-6, 6, 121).astype(np.float32)
    t = torch.from_numpy(x)
    # atol: one float32 ulp at |x| = 6 (the erf tails round differently in the two libraries)
    np.testing.assert_allclose(GELUS["erf"](x), torch.nn.functional.gelu(t).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(GELUS["tanh"](x), torch.nn.functional.gelu(t, approximate="tanh").numpy(),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(GELUS["sigmoid"](x), x / (1 + np.exp(-1.702 * x)), rtol=1e-6, atol=1e-7)
    assert 0.015 < np.abs(GELUS["sigmoid"](x) - GELUS["erf"](x)).max() < 0.025  # the forms really differ


def test_exact_gelu_and_torch_softplus():
    x = jnp.asarray([-3.0, -0.5, 0.0, 0.5, 3.0])
    from scipy.special import erf  # exact form: x * Phi(x)
    np.testing.assert_allclose(gelu_erf(x), x * 0.5 * (1 + erf(np.asarray(x) / np.sqrt(2))), rtol=1e-6, atol=1e-7)
    assert float(softplus(jnp.asarray(25.0))) == 25.0  # torch's threshold: identity above 20
    np.testing.assert_allclose(softplus(jnp.asarray(1.0)), np.log1p(np.e), rtol=1e-6)


def test_bfloat16_compute_keeps_float32_parameters_statistics_and_outputs():
    f32 = build_model(ModelConfig.tiny(), seed=3)
    bf16 = build_model(ModelConfig.tiny(dtype="bfloat16"), seed=3)
    for m in (f32, bf16):
        m.train()
        forward(m, _x())
        m.eval()
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(bf16, nnx.Param)))
    assert bf16.stem.bn.mean[...].dtype == jnp.float32
    y32, y16 = np.asarray(forward(f32, _x(seed=2))), np.asarray(forward(bf16, _x(seed=2)))
    assert y16.dtype == np.float32 and np.isfinite(y16).all()
    assert np.corrcoef(y32.ravel(), y16.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("variant", ["basenji2-double-prime", "basenji2-prime"])
def test_conv_biases_fold_into_the_batchnorm_that_follows(variant):
    """Every conv feeds a BatchNorm, which takes the conv's bias: in training its gradient is exactly 0
    (not rounding noise that Adam would amplify to lr-sized steps) and it moves only the running mean; in
    eval it shifts the running mean, as adding it to the conv output would."""
    cfg = ModelConfig.tiny(variant=variant)
    model = build_model(cfg, seed=0)
    x = jnp.asarray(np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (2, cfg.seq_length))])
    grads = nnx.to_flat_state(nnx.jit(nnx.grad(lambda m: m(x, "human").mean()))(model))
    biases = [(path, g) for path, g in grads if path[-1] == "bias" and "conv" in str(path[-2])]
    assert len(biases) == 2 + cfg.tower_layers + 2 * cfg.dilated_layers
    assert all(not np.any(g[...]) for _, g in biases)
    model.eval()
    block = model.final
    block.conv.bias[...] = jnp.full(block.conv.bias.shape, 0.3)
    h = jnp.asarray(np.random.default_rng(1).standard_normal((2, 16, cfg.trunk_channels)), jnp.float32)
    added = block.bn(block.conv(h) + 0.3)
    np.testing.assert_allclose(block.bn(block.conv(h), block.conv.bias[...]), added, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preset", ["tiny", "tiny-basenji2"])
def test_the_gpu_program_computes_the_same_model(preset, monkeypatch):
    """What a GPU runs: its layout (ModelConfig.channel_multiple 8, gemm_convs "stem,dilated": stem and tower
    widths zero-padded to multiples of 8, tiny 18, 21, 25, 29, 35 -> 24, 24, 32, 32, 40; the stem and dilated
    convs as matmuls, `gemm_conv`), then also the GPU's form of the BatchNorm sums and backward
    (`ops.per_platform`, which XLA lowers only on a GPU, made to pick it here). From the same parameters, in
    float64: the same outputs, loss, gradients of every parameter and running statistics; the padded
    channels are exactly 0 in training and in eval."""
    from jax_basenji import ops
    from jax_basenji.losses import poisson_loss

    gpu_layout = {"channel_multiple": 8, "gemm_convs": "stem,dilated"}
    with jax.enable_x64(True):
        base = ModelConfig.preset(preset, dtype="float64", residual_dropout=0.0, final_dropout=0.0)
        x = _x(length=4096).astype(jnp.float64)
        target = jnp.asarray(np.random.default_rng(2).poisson(1.0, (2, base.output_bins(4096), 8)), jnp.float64)
        results = []
        for layout, gpu_maths in (({"channel_multiple": 1, "gemm_convs": "none"}, False),
                                  (gpu_layout, False), (gpu_layout, True)):
            if gpu_maths:
                monkeypatch.setattr(ops, "per_platform", lambda *args, cpu, gpu: gpu(*args))

            @nnx.jit  # one program each (a new function: no cached trace); eager float64 took most of the time
            def train(m):
                loss, grads = nnx.value_and_grad(lambda m: poisson_loss(m(x, "human"), target))(m)
                return loss, grads, m.tower[1](m.tower[0](m.stem(x)))

            model = build_model(base.replace(**layout), seed=3)
            loss, grads, padded = train(model)
            model.eval()
            y = nnx.jit(lambda m: m(x, "human"))(model)
            results.append((loss, grads, nnx.state(model, nnx.BatchStat), y, padded))
        loss1, grads1, stats1, y1, plain = results[0]
        width = base.tower_channels[1]
        for loss8, grads8, stats8, y8, padded in results[1:]:
            np.testing.assert_allclose(loss8, loss1, rtol=1e-13)
            for a, b in zip(jax.tree.leaves(grads8), jax.tree.leaves(grads1), strict=True):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * max(1.0, float(np.abs(b).max())))
            for a, b in zip(jax.tree.leaves(stats8), jax.tree.leaves(stats1), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
            np.testing.assert_allclose(y8, y1, rtol=1e-12, atol=1e-13)
            assert padded.shape[-1] == -(-width // 8) * 8 > width and plain.shape[-1] == width
            assert not np.any(padded[..., width:])
            np.testing.assert_allclose(padded[..., :width], plain, rtol=1e-12, atol=1e-13)


def test_the_layout_is_a_run_option_resolved_per_machine():
    """Checkpoints record the architecture only; "auto" is the plain layout off a GPU."""
    cfg = ModelConfig.tiny(channel_multiple=8, gemm_convs="dilated")
    assert cfg.architecture() == ModelConfig.tiny()
    assert compute_layout(cfg) == (8, ("dilated",))
    assert compute_layout(ModelConfig.tiny()) == ((8, ("stem", "dilated")) if jax.default_backend() == "gpu"
                                                  else (1, ()))
    with pytest.raises(ValueError, match="unknown gemm_convs 'all'"):
        ModelConfig.tiny(gemm_convs="all")


def test_remat_trains_like_the_plain_model():
    """--remat only changes what the backward pass stores: the same loss and gradients (without
    dropout, whose masks remat draws per block), and with dropout it trains in a jitted step
    (nnx.remat used to fail there: it could not advance the caller's dropout Rngs)."""
    from jax_basenji.losses import poisson_loss

    x, results = _x(length=4096), []  # 16 output bins: every block, less compute
    for remat, rate in ((False, 0.0), (True, 0.0), (True, 0.3)):
        model = build_model(ModelConfig.tiny(remat=remat, residual_dropout=rate, final_dropout=rate / 6), seed=1)
        model.train()
        loss, grads = nnx.jit(lambda m: nnx.value_and_grad(
            lambda mm: poisson_loss(mm(x, "human", rngs=nnx.Rngs(dropout=jax.random.key(5))), jnp.ones(())))(m))(model)
        results.append((float(loss), jax.tree.leaves(nnx.to_pure_dict(grads))))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    scale = max(np.abs(g).max() for g in results[0][1])  # pre-BN conv biases: true gradient 0, noise only
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * scale)
    assert np.isfinite(results[2][0]) and results[2][0] != results[1][0]  # dropout on: other masks, finite


def test_bf16_gradients_agree_with_fp32_to_bf16_precision():
    """bf16 compute (float32 parameters, statistics and loss) against fp32, on a state far from init.

    Tolerances in units of bf16's unit roundoff u = 2**-8 (Frobenius-relative per tensor): the
    head and the final BatchNorm within 16 u (measured up to 8 u), every gradient within 128 u
    (rounding compounds through the trunk: ~20 u in the dilated blocks, up to 85 u in the stem
    and tower, where max-pool ties flip). Conv biases feeding a train-mode BatchNorm (true gradient 0) are left out.
    """
    from flax.traverse_util import flatten_dict

    from jax_basenji.losses import poisson_loss

    u = 2.0 ** -8
    cfg = ModelConfig.tiny(residual_dropout=0.0, final_dropout=0.0)
    rng = np.random.default_rng(0)
    m32 = build_model(cfg, seed=3)
    far = jax.tree.map(lambda p: p * (1 + 0.5 * rng.standard_normal(p.shape)).astype(np.float32)
                       + 0.05 * rng.standard_normal(p.shape).astype(np.float32), nnx.state(m32, nnx.Param))
    nnx.update(m32, far)
    m16 = build_model(cfg.replace(dtype="bfloat16"), seed=3)
    nnx.update(m16, nnx.state(m32, nnx.Any(nnx.Param, nnx.BatchStat)))
    x = _x(batch=4, length=4096, seed=3)  # 16 output bins: quick in CPU bf16
    y = jnp.asarray(rng.gamma(1.0, 2.0, (4, cfg.output_bins(4096), 8)), jnp.float32)

    def grads(model):
        model.train()
        g = nnx.jit(nnx.grad(lambda m: poisson_loss(m(x, "human"), y)))(model)
        return {"/".join(map(str, k)): np.asarray(v, np.float64) for k, v in flatten_dict(nnx.to_pure_dict(g)).items()
                if not (k[-1] == "bias" and k[-2].startswith("conv"))}

    g32, g16 = grads(m32), grads(m16)
    assert all(np.asarray(v).dtype == np.float64 for v in g16.values())
    rel = {k: np.linalg.norm(g16[k] - g32[k]) / np.linalg.norm(g32[k]) for k in g32 if k.startswith(("stem", "tower",
           "dilated", "final", "heads/human"))}
    assert max(rel.values()) <= 128 * u, max(rel.items(), key=lambda kv: kv[1])
    assert max(v for k, v in rel.items() if k.startswith(("final/bn", "heads"))) <= 16 * u
    assert max(rel.values()) > u / 16  # bf16 really ran
