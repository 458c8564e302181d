"""The GPU layout's convolutions as matmuls (jax_basenji.gemm_conv) compute the model's convolution exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_basenji import gemm_conv

# (kernel, in, out, dilation): the output side (out < in, the dilated blocks' 768 -> 384; a dilation past
# the 40 positions) and the input side (the stem's 4 -> 288; equal widths; a 1-wide kernel).
SHAPES = [(3, 12, 5, 4), (5, 9, 3, 3), (3, 12, 5, 45), (15, 4, 7, 1), (3, 8, 8, 2), (1, 6, 3, 1)]


def lax_conv(x, kernel, dilation):
    pad = dilation * (kernel.shape[0] - 1) // 2
    return jax.lax.conv_general_dilated(x, kernel, (1,), [(pad, pad)], rhs_dilation=(dilation,),
                                        dimension_numbers=("NWC", "WIO", "NWC"))


def _inputs(k, cin, cout, length=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, length, cin)), rng.standard_normal((k, cin, cout)),
            rng.standard_normal((2, length, cout)))


def _value_and_grads(conv, x, kernel, cotangent, dilation):
    """(y, d x, d kernel), one jitted program (op-by-op dispatch of the 15 shifted taps took seconds)."""
    @jax.jit
    def run(x, kernel, cotangent):
        y, pullback = jax.vjp(lambda x, kernel: conv(x, kernel, dilation), x, kernel)
        return (y, *pullback(cotangent.astype(y.dtype)))

    return run(x, kernel, cotangent)


@pytest.mark.parametrize("k,cin,cout,dilation", SHAPES)
def test_output_and_both_gradients_equal_the_convolution_in_float64(k, cin, cout, dilation):
    """Taps reaching past either end of the sequence read zeros, as "same" padding does (one dilation
    reaches past both ends from every position)."""
    with jax.enable_x64(True):
        x, kernel, cotangent = map(jnp.asarray, _inputs(k, cin, cout))
        ours = _value_and_grads(gemm_conv.conv, x, kernel, cotangent, dilation)
        reference = _value_and_grads(lax_conv, x, kernel, cotangent, dilation)
        for a, b in zip(ours, reference, strict=True):
            assert a.dtype == jnp.float64
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * float(np.abs(b).max()))


@pytest.mark.parametrize("k,cin,cout,dilation", SHAPES)
def test_both_sides_round_once_in_bfloat16(k, cin, cout, dilation):
    """bfloat16 in, bfloat16 out, float32 accumulation: the output and both gradients are the float32 results
    of the same bfloat16 values rounded once (relative error <= 2^-8), and the gradients stay bfloat16."""
    x, kernel, cotangent = (jnp.asarray(a, jnp.bfloat16) for a in _inputs(k, cin, cout, length=64, seed=1))
    ours = _value_and_grads(gemm_conv.conv, x, kernel, cotangent, dilation)
    exact = _value_and_grads(lax_conv, *(a.astype(jnp.float32) for a in (x, kernel, cotangent)), dilation)
    for a, b in zip(ours, exact, strict=True):
        assert a.dtype == jnp.bfloat16
        b = np.asarray(b)
        np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=2.0 ** -8, atol=1e-6 * np.abs(b).max())


def test_an_even_kernel_is_refused():
    """A "same" convolution of an even kernel has no symmetric padding (lax would return length - 1)."""
    with pytest.raises(ValueError, match="odd kernel, not 4 wide"):
        gemm_conv.conv(jnp.zeros((1, 8, 3)), jnp.zeros((4, 3, 2)), 1)
