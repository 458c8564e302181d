"""Parity tests run in float32 with the highest matmul precision on both sides."""

import jax
import pytest
import torch

jax.config.update("jax_default_matmul_precision", "highest")
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
