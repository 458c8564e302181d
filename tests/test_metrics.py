"""Pearson R and R² from per-batch moments: exact where raw sums cancel, whatever the batching."""

import jax.numpy as jnp
import numpy as np
from scipy.stats import pearsonr

from jax_basenji.metrics import PearsonSums, centered_moments


def _batches(seed=0, offset=1e4):
    """float32 predictions/targets with a large mean and a small spread: Σxy − ΣxΣy/n cancels."""
    rng = np.random.default_rng(seed)
    y = offset + rng.standard_normal((12, 64, 3))
    x = y + 0.5 * rng.standard_normal(y.shape) + np.array([0.0, 3.0, -2.0])
    return x.astype(np.float32), y.astype(np.float32)


def test_pearson_r_from_device_batches_matches_scipy_despite_cancellation():
    x, y = _batches()
    sums = PearsonSums()
    for b in range(0, 12, 5):  # uneven batches: 5, 5, 2 sequences of 64 bins
        sums.add(centered_moments(jnp.asarray(x[b:b + 5]), jnp.asarray(y[b:b + 5]), axis=(0, 1)))
    xs, ys = x.reshape(-1, 3).astype(np.float64), y.reshape(-1, 3).astype(np.float64)
    want = [pearsonr(xs[:, t], ys[:, t])[0] for t in range(3)]
    np.testing.assert_allclose(sums.pearson_r(), want, rtol=1e-5)
    want_r2 = 1 - ((ys - xs) ** 2).sum(0) / ((ys - ys.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(sums.r2(), want_r2, rtol=1e-5)
    # What raw float32 sums give here, for the record: nowhere near.
    n = xs.shape[0]
    raw = lambda a: a.astype(np.float32).sum(0, dtype=np.float32)  # noqa: E731
    cov = raw(xs * ys) / n - raw(xs) / n * raw(ys) / n
    with np.errstate(invalid="ignore"):  # the raw variances even come out negative
        naive = cov / np.sqrt((raw(xs * xs) / n - (raw(xs) / n) ** 2) * (raw(ys * ys) / n - (raw(ys) / n) ** 2))
    assert not np.allclose(naive, want, rtol=1e-2)


def test_losses_are_averaged_over_batches():
    sums = PearsonSums()
    x, y = _batches(seed=1, offset=0.0)
    for b, loss in zip(range(0, 12, 6), (1.0, 3.0)):
        sums.add({"loss": loss, "loss_rna": 2 * loss, **centered_moments(x[b:b + 6], y[b:b + 6], axis=(0, 1))})
    assert sums.losses == {"loss": 2.0, "loss_rna": 4.0} and sums.loss == 2.0


def test_spearman_over_the_human_head_stays_within_a_chunk_of_memory():
    """5313 tracks (the real human head) x 10,000 positions: the ranks exist one 256-track chunk
    at a time. Measured in a child process: peak RSS growth beyond the float32 inputs."""
    import subprocess
    import sys

    code = """
import resource, numpy as np
from jax_basenji.evaluate.common import spearman_columns
rng = np.random.default_rng(0)
x = rng.standard_normal((10_000, 5313), dtype=np.float32)
y = (x + rng.standard_normal(x.shape, dtype=np.float32)).astype(np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = spearman_columns(x, y)
grow = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(grow * 1024 / 1e6, float(r.mean()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    growth_mb, mean_r = float(out[0]), float(out[1])
    assert 0.68 < mean_r < 0.70  # y = x + noise: Pearson 1/sqrt(2), Spearman (6/pi) asin(1/(2 sqrt(2))) = 0.690
    # all tracks at once in float64 (ranks, centred copies) would add > 1,700 MB; the inputs are 425 MB
    assert growth_mb < 400, growth_mb


def test_spearman_columns_match_scipy():
    from scipy.stats import spearmanr

    from jax_basenji.evaluate.common import spearman_columns

    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 7)).astype(np.float32)
    y = np.round(x + rng.standard_normal(x.shape), 1).astype(np.float32)  # ties in y
    want = [spearmanr(x[:, t], y[:, t])[0] for t in range(7)]
    np.testing.assert_allclose(spearman_columns(x, y, chunk=3), want, rtol=1e-12)
