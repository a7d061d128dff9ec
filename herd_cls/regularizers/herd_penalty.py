"""HeRD's penalties as pure functions of latent Hessians (or of block masses) and labels.

The mathematics is fixed in docs/method.md: for every sample i, ``H_i`` is the Hessian of the
sample's loss with respect to its own latent vector ``z_i``; class-specific HeRD penalises the share
of ``|H_i|`` that lies outside the class's block: each image's share, averaged per class
(:func:`image_penalty`), or the share of the per-class mean (:func:`class_penalty`). Which dims a
class owns is the :class:`~herd_cls.layout.BlockLayout`; how curvature is computed lives in
:mod:`herd_cls.curvature`; the named formulations that combine these are in :mod:`.herd_forms`, and
the :class:`~herd_cls.regularizers.herd.HeRD` module applies them.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..purity import class_abs_sum, own_share

# log-purity penalises -log((P + delta) / (1 + delta)): finite at P = 0, 0 at P = 1
LOG_PURITY_DELTA = 0.01
Reduce = Callable[[Tensor], Tensor]


def summed(t: Tensor, reduce: Reduce | None) -> Tensor:
    """t summed over processes by ``reduce`` (t itself for None)."""
    return t if reduce is None else reduce(t)


def class_penalty(
    H: Tensor, labels: Tensor, mask: Tensor, log_purity: bool = False, reduce: Reduce | None = None
) -> Tensor:
    """R_class = sum over classes c in the batch of sum(M_c * Hbar_c) / mean(Hbar_c).

    With ``log_purity`` (and the purity mask, for which that sum is the mean of 1 - P_c) it is
    instead the mean of -log((P_c + delta) / (1 + delta)), which weighs the least pure class most.
    ``reduce`` sums the per-class |H| sums and counts over processes (e.g. an all-reduce), so the
    penalty is that of the global batch.
    """
    total, counts = class_abs_sum(H, labels, mask.shape[0])
    total, counts = summed(total, reduce), summed(counts, reduce)
    hbar, present = total / counts.clamp_min(1).view(-1, 1, 1), counts > 0
    ratio = (mask * hbar).sum((1, 2)) / hbar.mean((1, 2)).clamp_min(torch.finfo(H.dtype).tiny)
    if log_purity:
        return log_impurity(1 - mask.shape[0] * ratio[present])
    return ratio[present].sum()


def log_impurity(purity: Tensor) -> Tensor:
    """The mean of -log((P + delta) / (1 + delta)) over class purities P: 0 when all are pure."""
    return -torch.log((purity.clamp(0, 1) + LOG_PURITY_DELTA) / (1 + LOG_PURITY_DELTA)).mean()


def image_penalty(
    share: Tensor, labels: Tensor, num_classes: int, reduce: Reduce | None = None
) -> Tensor:
    """Mean over the classes in the batch of the class's mean of 1 - share_i, for per-image
    own-block shares (B,). Each image counts once, however small its curvature: a confident image's
    cross-entropy curvature is O(1 - p_y), so in the class-mean |H| it hardly counts at all."""
    onehot = F.one_hot(labels, num_classes).to(share.dtype)
    impurity, counts = summed(onehot.T @ (1 - share), reduce), summed(onehot.sum(0), reduce)
    present = counts > 0
    return (impurity[present] / counts[present]).mean()


def universal_terms(H: Tensor, reduce: Reduce | None = None) -> dict[str, Tensor]:
    """The universal penalty's terms apart, on Hbar = mean |H_i| (H: (B, d, d)): ``offdiag_share``
    (the share of Hbar's mass off the diagonal), ``diag_norm`` (||diag(Hbar)||_2 / d),
    ``image_offdiag_share`` (the mean of each image's own off-diagonal share), ``correlation`` (the
    mean over images and pairs j != k of |H_jk| / sqrt(|H_jj| |H_kk|)) and ``diag_imbalance``
    ((||diag||_2 / ||diag||_1 - d^-1/2) / (1 - d^-1/2): 0 when every dim holds the same share of the
    diagonal mass, 1 when one dim holds it all)."""
    tiny = torch.finfo(H.dtype).tiny
    d = H.shape[-1]
    count = summed(H.new_tensor(float(len(H))), reduce)
    A = H.abs()
    hbar = summed(A.sum(0), reduce) / count
    diag = torch.diagonal(hbar)
    total = hbar.sum().clamp_min(tiny)
    per_diag = torch.diagonal(A, dim1=1, dim2=2)  # (B, d)
    per_total = A.sum((1, 2))
    image_share = (
        summed(((per_total - per_diag.sum(1)) / per_total.clamp_min(tiny)).sum(), reduce) / count
    )
    off = ~torch.eye(d, dtype=torch.bool, device=H.device)
    root = (per_diag.unsqueeze(2) * per_diag.unsqueeze(1)).clamp_min(tiny).sqrt()
    corr = (A / root).clamp(max=1.0)[:, off]  # (B, d^2 - d)
    correlation = summed(corr.mean(1).sum(), reduce) / count
    root_d = d**0.5
    imbalance = (
        (diag.norm() / diag.sum().clamp_min(tiny) - 1 / root_d) / (1 - 1 / root_d)
        if d > 1
        else diag.sum() * 0
    )
    return {
        "offdiag_share": (hbar.sum() - diag.sum()) / total,
        "diag_norm": diag.norm() / d,
        "image_offdiag_share": image_share,
        "correlation": correlation,
        "diag_imbalance": imbalance,
    }


def class_purity_from_masses(
    inside: Tensor, total: Tensor, labels: Tensor, num_classes: int, reduce: Reduce | None = None
) -> Tensor:
    """Purity P_c = sum_i inside_i / sum_i total_i of each class present in the batch, from
    per-image (B,) squared Frobenius masses inside the own block and in all; ``reduce`` as in
    :func:`class_penalty`."""
    onehot = F.one_hot(labels, num_classes).to(total.dtype)
    tot, ins, counts = (
        summed(onehot.T @ total, reduce),
        summed(onehot.T @ inside, reduce),
        summed(onehot.sum(0), reduce),
    )
    # a class without curvature counts as pure, as in the exact path
    return own_share(ins, tot)[counts > 0]
