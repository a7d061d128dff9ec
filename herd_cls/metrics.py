"""Class-specific disentanglement metrics: pure functions of tensors and arrays."""
from __future__ import annotations

import torch
from torch import Tensor


def class_block_purity(hbar: Tensor, blocks: Tensor) -> Tensor:
    """Share of each class's mean |H| mass that lies inside its own block B_c x B_c.

    Args:
        hbar: (K, d, d) per-class mean (or sum) of |H_i|.
        blocks: (K, d) boolean class blocks.
    Returns:
        (K,) purity in [0, 1]; NaN for a class with no mass (absent from the data).
        Chance, for mass spread evenly, is (n / d)^2 with n dims per block.
    """
    inside = (hbar.abs() * (blocks.unsqueeze(2) & blocks.unsqueeze(1))).sum((1, 2))
    total = hbar.abs().sum((1, 2))
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(hbar.dtype).tiny),
                       torch.full_like(total, float("nan")))
