"""The Hessian Penalty (Peebles et al. 2020) on the decoder, as ``--reg hessian-penalty``."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .base import decoder_penalty


@decoder_penalty(
    "hessian-penalty",
    "the Hessian Penalty on the decoder (finite differences, k=2, eps=0.1)",
    default_weight=0.001,
)
def hessian_penalty(
    fn: Callable[[Tensor], Tensor],
    z: Tensor,
    k: int = 2,
    epsilon: float = 0.1,
    reduction: Callable[[Tensor], Tensor] = torch.max,
    scale: Tensor | None = None,
) -> Tensor:
    """The Hessian Penalty: the variance, over ``k`` Rademacher directions v, of the central second
    difference (fn(z + eps v) - 2 fn(z) + fn(z - eps v)) / eps^2, which estimates v^T H v for every
    output element; reduced (max, as in the paper) over elements.

    Its expectation is 2 * the sum of squared off-diagonal Hessian entries of each output w.r.t. z.
    ``scale`` (d,) measures z in those units (probes ``eps * scale * v``): the paper's z comes from
    a unit prior, an encoder's z does not, and without it an encoder could shrink the penalty by
    merely scaling z up (and the decoder's first layer down).
    """
    center = fn(z)
    unit = torch.ones_like(z[0]) if scale is None else scale
    second = []
    for _ in range(k):
        v = epsilon * unit * (torch.randint(0, 2, z.shape, device=z.device).to(z.dtype) * 2 - 1)
        second.append((fn(z + v) - 2 * center + fn(z - v)) / epsilon**2)
    return reduction(torch.stack(second).var(0, unbiased=True))
