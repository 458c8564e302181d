"""The training engine's optimizers and schedule against torch and a direct formula (float64).

`jax_basenji.trainer.direction` (the update without its learning rate) and
`learning_rate` are what `Trainer.train_step` applies; here they drive the same
parameters with the same gradients as torch.optim for several steps.
"""

import jax
import numpy as np
import pytest
import torch

from jax_basenji.train_config import TrainConfig
from jax_basenji.trainer import direction, learning_rate

STEPS = 6


@pytest.mark.parametrize("optimizer, momentum, weight_decay", [
    ("sgd", 0.99, 0.0), ("sgd", 0.9, 1e-2), ("adam", 0.9, 0.0), ("adam", 0.8, 1e-2), ("adamw", 0.9, 1e-2),
])
def test_updates_equal_torch(optimizer, momentum, weight_decay):
    tc = TrainConfig(optimizer=optimizer, lr=0.05, momentum=momentum, weight_decay=weight_decay)
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(50)
    grads = [rng.standard_normal(50) for _ in range(STEPS)]

    tp = torch.tensor(p0, requires_grad=True)
    topt = {"sgd": lambda: torch.optim.SGD([tp], lr=tc.lr, momentum=momentum, weight_decay=weight_decay),
            "adam": lambda: torch.optim.Adam([tp], lr=tc.lr, betas=(momentum, 0.999), weight_decay=weight_decay),
            "adamw": lambda: torch.optim.AdamW([tp], lr=tc.lr, betas=(momentum, 0.999),
                                               weight_decay=weight_decay)}[optimizer]()
    with jax.enable_x64(True):
        tx = direction(tc)
        p = jax.numpy.asarray(p0)
        state = tx.init(p)
        for g in grads:
            tp.grad = torch.tensor(g)
            topt.step()
            d, state = tx.update(jax.numpy.asarray(g), state, p)
            p = p - tc.lr * d
        np.testing.assert_allclose(np.asarray(p), tp.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_warmup_then_cosine_is_the_textbook_formula():
    tc = TrainConfig(lr=0.1, warmup_steps=10, schedule="cosine", steps=110)
    schedule = learning_rate(tc)
    for t in (0, 1, 5, 10, 11, 60, 109, 110):
        want = 0.1 * t / 10 if t < 10 else 0.1 * 0.5 * (1 + np.cos(np.pi * (t - 10) / 100))
        assert float(schedule(t)) == pytest.approx(want, rel=1e-6, abs=1e-7 * tc.lr), t  # float32 schedule
    constant = learning_rate(TrainConfig(lr=0.1, warmup_steps=4))
    np.testing.assert_allclose([float(constant(t)) for t in (0, 2, 4, 50)], [0.0, 0.05, 0.1, 0.1], rtol=1e-6)
