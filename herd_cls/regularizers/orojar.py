"""The orthogonal Jacobian regularizer (OroJaR, Wei et al. CVPR 2021) on the decoder, as ``--reg
orojar``."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..derivatives import forward_jacobian
from .base import decoder_penalty


@decoder_penalty(
    "orojar", "OroJaR: orthogonal decoder Jacobian columns (finite differences)", default_weight=1.0
)
def orojar_penalty(
    fn: Callable[[Tensor], Tensor], z: Tensor, scale: Tensor | None = None, eps: float = 1e-3
) -> Tensor:
    """Mean over samples of sum_{j != k} (J_j . J_k / N)^2: the squared off-diagonal of J^T J / N,
    for the Jacobian J (N outputs x d) of ``fn`` at each z (B, d). Zero when every latent dim moves
    the output in a direction orthogonal to every other's. The 1 / N puts it on the per-element
    scale of the reconstruction loss, which is a mean over pixels here.

    J's columns come from one-sided finite differences (d extra forward passes, batched; no double
    backward in the gradient). ``scale`` (d,) measures z in those units, as for the Hessian Penalty:
    an encoder's z has no unit prior, and without it the encoder could shrink the penalty by scaling
    z up.
    """
    unit = torch.ones_like(z[0]) if scale is None else scale
    _, (jac,) = forward_jacobian(fn, z, eps, unit)
    columns = jac.flatten(2)  # (d, B, N)
    gram = torch.einsum("jbn,kbn->bjk", columns, columns) / columns.shape[-1]
    off = gram - torch.diag_embed(torch.diagonal(gram, dim1=1, dim2=2))
    return off.pow(2).sum((1, 2)).mean()
