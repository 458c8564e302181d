"""The fused train-mode BatchNorm -> GELU -> MaxPool(2), and train-mode BatchNorm alone, equal their definitions."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jax_basenji import ops
from jax_basenji.bench import hlo as hlo_reader
from jax_basenji.fused import batch_norm, bn_gelu_pool
from jax_basenji.ops import channel_sums

EPS = 1e-5


def plain_batch_norm(x, scale, bias):
    mean = x.mean(axis=(0, 1))
    var = jnp.square(x - mean).mean(axis=(0, 1))
    return (x - mean) * jax.lax.rsqrt(var + EPS) * scale + bias, mean, var


def unfused(y, scale, bias):
    u, mean, var = plain_batch_norm(y, scale, bias)
    a = jax.nn.gelu(u, approximate=False)
    b, n, c = a.shape
    return a[:, : n - n % 2].reshape(b, n // 2, 2, c).max(axis=2), mean, var


def torch_reference(y, scale, bias, weights, gelu_pool: bool = True):
    """The seed's ops in torch float64 (BatchNorm, then GELU and MaxPool1d(2) unless `gelu_pool` is False):
    gradients of sum(weights * block(y))."""
    y, scale, bias = (torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)
                      for a in (y, scale, bias))
    out = torch.nn.functional.batch_norm(y.transpose(1, 2), None, None, scale, bias, training=True, eps=EPS)
    if gelu_pool:
        out = torch.nn.functional.max_pool1d(torch.nn.functional.gelu(out), 2)
    (out.transpose(1, 2) * torch.tensor(np.asarray(weights))).sum().backward()
    return [t.grad.numpy() for t in (y, scale, bias)]


@pytest.fixture(autouse=True)
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("length", [36, 37])
def test_outputs_and_gradients_equal_autodiff_in_float64(length):
    rng = np.random.default_rng(length)
    y = jnp.asarray(rng.normal(size=(2, length, 5)) * 3 + 1)
    scale, bias = jnp.asarray(rng.normal(size=5) + 1), jnp.asarray(rng.normal(size=5))
    w = jnp.asarray(rng.normal(size=(2, length // 2, 5)))
    got, ref = bn_gelu_pool(y, scale, bias, EPS), unfused(y, scale, bias)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)

    def loss(f):
        return lambda *args: (f(*args)[0] * w).sum()

    g_fused = jax.grad(loss(lambda *a: bn_gelu_pool(*a, EPS)), argnums=(0, 1, 2))(y, scale, bias)
    g_auto = jax.grad(loss(unfused), argnums=(0, 1, 2))(y, scale, bias)
    g_torch = torch_reference(y, scale, bias, w)
    for a, b, c in zip(g_fused, g_auto, g_torch):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-12)


def test_pool_ties_send_the_gradient_to_the_first_element_like_torch():
    # Equal pairs (e.g. conv outputs over a run of N) tie in the max-pool: torch's
    # MaxPool1d routes the whole gradient to the first; JAX's max would split it.
    rng = np.random.default_rng(0)
    y = jnp.asarray(np.repeat(rng.normal(size=(1, 8, 3)), 2, axis=1))
    scale, bias = jnp.ones(3), jnp.zeros(3)
    w = jnp.asarray(rng.normal(size=(1, 8, 3)))
    g = jax.grad(lambda y: (bn_gelu_pool(y, scale, bias, EPS)[0] * w).sum())(y)
    np.testing.assert_allclose(g, torch_reference(y, scale, bias, w)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 36, 5), (1, 37, 3)])
def test_batch_norm_outputs_and_gradients_equal_autodiff_and_torch_in_float64(shape):
    """The train-mode BatchNorm of the dilated and final blocks (a backward that keeps only its input)."""
    rng = np.random.default_rng(shape[1])
    x = jnp.asarray(rng.normal(size=shape) * 3 + 1)
    scale, bias = jnp.asarray(rng.normal(size=shape[2]) + 1), jnp.asarray(rng.normal(size=shape[2]))
    w = jnp.asarray(rng.normal(size=shape))
    for a, b in zip(batch_norm(x, scale, bias, EPS), plain_batch_norm(x, scale, bias)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)

    def loss(f):
        return lambda *args: (f(*args)[0] * w).sum()

    got = jax.grad(loss(lambda *a: batch_norm(*a, EPS)), argnums=(0, 1, 2))(x, scale, bias)
    auto = jax.grad(loss(plain_batch_norm), argnums=(0, 1, 2))(x, scale, bias)
    for a, b, c in zip(got, auto, torch_reference(x, scale, bias, w, gelu_pool=False)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape, gpu_grouped", [((2, 36, 5), True), ((2, 37, 3), True), ((1, 37, 3), False),
                                                ((4, 1024, 768), True), ((8, 1024, 768), False)])
def test_channel_sums_equal_plain_sums_in_float64(shape, gpu_grouped):
    """Runs of positions within each example are summed first: on a CPU always (runs of up to 16, where the
    length is even), on a GPU below 8,192 rows (one example of odd length has nothing to group). Either way
    the sums are the plain ones."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=shape) + 2)
    want = (x.sum(axis=(0, 1)), jnp.square(x).sum(axis=(0, 1)))
    for sums in (channel_sums, ops._cpu_sums, ops._gpu_sums):
        for a, b in zip(sums(x, jnp.square(x)), want):
            np.testing.assert_allclose(a, b, rtol=1e-14)
    grouped = lambda sums: "optimization_barrier" in str(jax.make_jaxpr(sums)(x))
    assert grouped(ops._gpu_sums) == gpu_grouped
    assert grouped(ops._cpu_sums) == (shape[1] % 2 == 0)


def test_on_a_cpu_the_next_weight_gradient_reads_the_stored_pooled_output():
    """XLA:CPU computes a convolution's weight gradient from a transposed copy of its input. Below a pooled
    output, that copy must read the stored output, not recompute BatchNorm -> GELU -> max from the conv output
    in transposed order (which cost 0.5 s of a 4 s Basenji2'' train step, docs/benchmarks.md)."""
    c, k = 16, 5

    def two_convs(params, x):
        w1, w2, scale, bias = params
        conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1,), [(2, 2)], dimension_numbers=("NWC", "WIO", "NWC"))
        return jnp.square(conv(bn_gelu_pool(conv(x, w1), scale, bias, EPS)[0], w2)).sum()

    f32 = lambda *shape: jnp.ones(shape, jnp.float32)
    hlo = jax.jit(jax.grad(two_convs)).lower((f32(k, 4, c), f32(k, c, c), f32(c), f32(c)), f32(1, 1024, 4)) \
        .compile().as_text()
    instructions = {name: (shape, op, operands, line)
                    for name, shape, op, operands, line in hlo_reader._instructions(hlo.splitlines())}
    # The second conv's weight gradient is the one convolution with its kernel's shape.
    [grad] = [i for i in instructions.values() if i[1] == "convolution" and i[0].startswith(f"f32[{c},{k},{c}]")]
    called = re.search(r"calls=%([\w.\-]+)", instructions[grad[2][0]][3])
    body = "\n".join(hlo_reader._computations(hlo)[called[1]]) if called else ""
    assert not re.search(r" (erf|maximum)\(", body), body
