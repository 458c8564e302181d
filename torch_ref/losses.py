"""The seed's training loss in PyTorch (docs/seed_reference.md)."""

import torch


def poisson_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean(pred - target * log(max(pred, 1e-20))) over `(B, bins, tracks)`."""
    return torch.mean(pred - target * torch.log(torch.clamp(pred, min=1e-20)))
