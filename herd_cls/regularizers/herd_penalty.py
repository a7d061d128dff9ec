"""HeRD's penalties: pure functions of latent Hessians, and the small :class:`HeRD` module around them.

The mathematics is fixed in docs/method.md: for every sample i, ``H_i`` is the Hessian of the sample's loss
with respect to its own latent vector ``z_i``; class-specific HeRD penalises the share of ``|H_i|`` that lies
outside the class's block: each image's share, averaged per class (the default, ``image-purity``), or the
share of the per-class mean (``purity``). Which dims a class owns is the :class:`~herd_cls.layout.BlockLayout`;
how curvature is computed lives in :mod:`herd_cls.curvature`.

>>> herd = HeRD(BlockLayout(num_classes=10, dims_per_class=2, shared_dims=2))
>>> penalty = herd(model.classify, z, y, labels=y, loss="ce")      # scalar, differentiable
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..block_curvature import block_head_masses, on_blocks
from ..decoder_curvature import DEFAULT_PROBES, curvature_shares
from ..curvature import METHODS, PROBE_METHODS, Loss, block_mass, curvature_method, has_closed_form, latent_hessian
from ..layout import BlockLayout
from ..purity import class_abs_sum, image_share, own_share
from ..registry import HerdError

VARIANTS = ("reference", "block", "purity", "log-purity", "image-purity", "dual-purity")
PURITY_VARIANTS = ("purity", "log-purity", "image-purity", "dual-purity")  # functions of the own block's share
IMAGE_VARIANTS = ("image-purity", "dual-purity")  # penalise each image's own share
LOG_PURITY_DELTA = 0.01  # log-purity penalises -log((P + delta) / (1 + delta)): finite at P = 0, 0 at P = 1
MODES = ("class", "universal")
Reduce = Callable[[Tensor], Tensor]


def free_region(layout: BlockLayout, variant: str = "reference") -> Tensor:
    """Boolean (K, d, d): the Hessian entries class c may use without penalty.

    ``reference``: the diagonal of B_c and of the shared dims (the original research code, exactly).
    ``block``: all of B_c x B_c (off-diagonal entries too) plus the shared diagonal.
    ``purity`` and ``log-purity``: B_c x B_c only, so the penalty is a function of block purity alone;
    a free shared diagonal was measured to pull whole classes' curvature into the shared dims.
    """
    if variant not in VARIANTS:
        raise HerdError(f"unknown HeRD variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    blocks, d = layout.masks, layout.latent_dim
    shared = ~blocks.any(0)
    eye = torch.eye(d, dtype=torch.bool)
    own = blocks.unsqueeze(2) & blocks.unsqueeze(1)
    if variant == "reference":
        return eye & (blocks | shared).unsqueeze(1)
    if variant in PURITY_VARIANTS:
        return own
    return own | (eye & shared).unsqueeze(0)


def class_mask(layout: BlockLayout, alpha_off: float = 0.5, alpha_diag: float = 1.0,
               variant: str = "reference") -> Tensor:
    """(K, d, d) penalty weights M_c for :func:`class_penalty`.

    ``reference``/``block``: alpha_off / (d^2 - d) off the diagonal, alpha_diag / d on it, 0 on the
    free region. ``purity``/``log-purity``: 1 / (d^2 K) outside the free region, so the penalty is the
    mean over classes of the share of |H| mass outside the class's own block.
    """
    free = free_region(layout, variant)
    d, num_classes = layout.latent_dim, layout.num_classes
    if variant in PURITY_VARIANTS:
        weights = torch.full((d, d), 1.0 / (d * d * num_classes))
    else:
        weights = torch.full((d, d), alpha_off / (d * d - d))
        weights.fill_diagonal_(alpha_diag / d)
    return weights.expand(num_classes, d, d).masked_fill(free, 0.0).contiguous()


def _sum(t: Tensor, reduce: Reduce | None) -> Tensor:
    return t if reduce is None else reduce(t)


def class_penalty(H: Tensor, labels: Tensor, mask: Tensor, log_purity: bool = False,
                  reduce: Reduce | None = None) -> Tensor:
    """R_class = sum over classes c in the batch of sum(M_c * Hbar_c) / mean(Hbar_c).

    With ``log_purity`` (and the purity mask, for which that sum is the mean of 1 - P_c) it is instead
    the mean of -log((P_c + delta) / (1 + delta)), which weighs the least pure class most.
    ``reduce`` sums the per-class |H| sums and counts over processes (e.g. an all-reduce), so the
    penalty is that of the global batch.
    """
    total, counts = class_abs_sum(H, labels, mask.shape[0])
    total, counts = _sum(total, reduce), _sum(counts, reduce)
    hbar, present = total / counts.clamp_min(1).view(-1, 1, 1), counts > 0
    ratio = (mask * hbar).sum((1, 2)) / hbar.mean((1, 2)).clamp_min(torch.finfo(H.dtype).tiny)
    if log_purity:
        return _log_impurity(1 - mask.shape[0] * ratio[present])
    return ratio[present].sum()


def _log_impurity(purity: Tensor) -> Tensor:
    return -torch.log((purity.clamp(0, 1) + LOG_PURITY_DELTA) / (1 + LOG_PURITY_DELTA)).mean()


def image_penalty(share: Tensor, labels: Tensor, num_classes: int, reduce: Reduce | None = None) -> Tensor:
    """Mean over the classes in the batch of the class's mean of 1 - share_i, for per-image own-block
    shares (B,). Each image counts once, however small its curvature: a confident image's cross-entropy
    curvature is O(1 - p_y), so in the class-mean |H| it hardly counts at all."""
    onehot = F.one_hot(labels, num_classes).to(share.dtype)
    impurity, counts = _sum(onehot.T @ (1 - share), reduce), _sum(onehot.sum(0), reduce)
    present = counts > 0
    return (impurity[present] / counts[present]).mean()


def universal_terms(H: Tensor, reduce: Reduce | None = None) -> dict[str, Tensor]:
    """The universal penalty's terms apart, on Hbar = mean |H_i| (H: (B, d, d)): ``offdiag_share`` (the
    share of Hbar's mass off the diagonal), ``diag_norm`` (||diag(Hbar)||_2 / d), ``image_offdiag_share``
    (the mean of each image's own off-diagonal share), ``correlation`` (the mean over images and pairs
    j != k of |H_jk| / sqrt(|H_jj| |H_kk|)) and ``diag_imbalance`` ((||diag||_2 / ||diag||_1 - d^-1/2) /
    (1 - d^-1/2): 0 when every dim holds the same share of the diagonal mass, 1 when one dim holds it all)."""
    tiny = torch.finfo(H.dtype).tiny
    d = H.shape[-1]
    count = _sum(H.new_tensor(float(len(H))), reduce)
    A = H.abs()
    hbar = _sum(A.sum(0), reduce) / count
    diag = torch.diagonal(hbar)
    total = hbar.sum().clamp_min(tiny)
    per_diag = torch.diagonal(A, dim1=1, dim2=2)                                    # (B, d)
    per_total = A.sum((1, 2))
    image_share = _sum(((per_total - per_diag.sum(1)) / per_total.clamp_min(tiny)).sum(), reduce) / count
    off = ~torch.eye(d, dtype=torch.bool, device=H.device)
    root = (per_diag.unsqueeze(2) * per_diag.unsqueeze(1)).clamp_min(tiny).sqrt()
    corr = (A / root).clamp(max=1.0)[:, off]                                         # (B, d^2 - d)
    correlation = _sum(corr.mean(1).sum(), reduce) / count
    root_d = d ** 0.5
    imbalance = (diag.norm() / diag.sum().clamp_min(tiny) - 1 / root_d) / (1 - 1 / root_d) if d > 1 else diag.sum() * 0
    return {"offdiag_share": (hbar.sum() - diag.sum()) / total, "diag_norm": diag.norm() / d,
            "image_offdiag_share": image_share, "correlation": correlation, "diag_imbalance": imbalance}


def universal_penalty(H: Tensor, alpha_off: float = 0.5, reduce: Reduce | None = None,
                      scale: Tensor | None = None) -> Tensor:
    """The universal (label-free) penalty of per-sample Hessians H (B, d, d): alpha_off times the
    off-diagonal share of Hbar = mean |H_i|, with z measured in units of ``scale`` (d,: each dim's batch std,
    so rescaling a dim changes nothing), plus the diagonal imbalance (:func:`universal_terms`), so that one
    live dim is no minimum. The other forms tried (the original work's share plus ||diag||/d among them) are
    retired with their numbers in docs/what-did-not-work.md."""
    if scale is not None:
        H = H * scale.unsqueeze(1) * scale.unsqueeze(0)
    t = universal_terms(H, reduce)
    return alpha_off * t["offdiag_share"] + t["diag_imbalance"]


def probe_penalty(inside: Tensor, total: Tensor, labels: Tensor, num_classes: int, variant: str = "purity",
                  reduce: Reduce | None = None) -> Tensor:
    """The purity ``variant``'s penalty from per-image (B,) estimates of squared Frobenius masses inside
    the own block and in all: class purity P_c = sum_i inside_i / sum_i total_i, image share
    inside_i / total_i; ``reduce`` as in :func:`class_penalty`."""
    per_image = image_penalty(own_share(inside, total).clamp(0, 1), labels, num_classes, reduce) if variant in IMAGE_VARIANTS else None
    if variant == "image-purity":
        return per_image
    onehot = F.one_hot(labels, num_classes).to(total.dtype)
    tot, ins, counts = _sum(onehot.T @ total, reduce), _sum(onehot.T @ inside, reduce), _sum(onehot.sum(0), reduce)
    present = counts > 0
    purity = own_share(ins, tot)  # a class without curvature counts as pure, as in the exact path
    if variant == "log-purity":
        return _log_impurity(purity[present])
    class_mean = (1.0 - purity[present]).mean()
    return class_mean if per_image is None else (class_mean + per_image) / 2


def _at_least_float32(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class HeRD(nn.Module):
    """Class-specific (or universal) Hessian regularizer for disentanglement.

    Args:
        layout: the class blocks (:class:`~herd_cls.layout.BlockLayout`); mode "universal" reads only its
            ``latent_dim``.
        mode: ``"class"`` (class blocks) or ``"universal"`` (diagonal Hessian, no labels used).
        alpha_off, alpha_diag: weights of off-diagonal and out-of-block diagonal mass (reference, block).
        variant: ``"image-purity"`` (the default: 1 - each image's own-block share of its |H|, averaged
            per class, then over classes, so confident images count as much as uncertain ones),
            ``"purity"`` (1 - the share of the class's summed |H| inside its block, which its least
            confident images decide), ``"dual-purity"`` (the mean of the two),
            ``"log-purity"`` (-log of each class's purity, so a collapsed class weighs most),
            ``"reference"`` (the original research code's formulation) or ``"block"`` (its whole own
            block free).
        method: how curvature is computed (:data:`herd_cls.curvature.METHODS`); ``"auto"`` picks by
            :func:`herd_cls.curvature.curvature_method`. The probe methods (``"forward"``, ``"hvp"``)
            estimate squared block masses, with mode "class" and a purity variant; in mode "universal",
            ``"forward"`` (what ``"auto"`` picks for decoder losses) computes the whole Gauss-Newton matrix.
        probes: the probe count of a probe method.
        reduce: sums per-class statistics over processes (e.g. ``herd_cls.distributed.all_reduce_sum``).

    >>> herd = HeRD(BlockLayout(num_classes=10, dims_per_class=2))
    >>> loss = F.cross_entropy(head(z), y) + herd(head, z, y, labels=y, loss="ce")
    """

    def __init__(self, layout: BlockLayout, mode: str = "class", alpha_off: float = 0.5, alpha_diag: float = 1.0,
                 variant: str = "image-purity", probes: int | None = None, method: str = "auto",
                 reduce: Reduce | None = None):
        super().__init__()
        if mode not in MODES:
            raise HerdError(f"unknown HeRD mode {mode!r}; choose one of: {', '.join(MODES)}")
        if method not in METHODS:
            raise HerdError(f"unknown curvature method {method!r}; choose one of: {', '.join(METHODS)}")
        if (probes is not None or method in PROBE_METHODS) and (mode != "class" or variant not in PURITY_VARIANTS):
            raise HerdError("probes estimate block purity: use them with mode 'class' and a variant of: "
                            + ", ".join(PURITY_VARIANTS))
        self.layout, self.mode, self.variant, self.probes, self.method = layout, mode, variant, probes, method
        self.alpha_off, self.alpha_diag, self.reduce = alpha_off, alpha_diag, reduce
        self.register_buffer("mask", class_mask(layout, alpha_off, alpha_diag, variant) if mode == "class" else None,
                             persistent=False)

    def _image_penalty(self, H: Tensor, labels: Tensor) -> Tensor:
        return image_penalty(image_share(H, labels, self.layout), labels, self.layout.num_classes, self.reduce)

    def penalty(self, H: Tensor, labels: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
        """The penalty of precomputed Hessians H (B, d, d), e.g. a sum of several losses' Hessians;
        ``scale`` (d,): the latent dims' batch std, for the universal penalty."""
        if self.mode == "universal":
            return universal_penalty(H, self.alpha_off, self.reduce, scale)
        if self.variant == "image-purity":
            return self._image_penalty(H, labels)
        class_mean = class_penalty(H, labels, self.mask, self.variant == "log-purity", self.reduce)
        return (class_mean + self._image_penalty(H, labels)) / 2 if self.variant == "dual-purity" else class_mean

    def forward(self, head: Callable, z: Tensor, target, labels: Tensor | None = None, loss: Loss = "ce") -> Tensor:
        """Scalar penalty for ``loss(head(z), target)``; ``labels`` pick each sample's block. Computed in
        float32, also inside a mixed-precision autocast region."""
        if self.mode == "class" and labels is None:
            raise HerdError("class-specific HeRD needs the labels of the batch")
        method, probes = curvature_method(self.method, loss, z.shape[1], self.probes, has_closed_form(head, loss))
        if self.mode == "universal" and method in PROBE_METHODS:
            # the universal penalty reads every entry: the whole Gauss-Newton matrix from d + 1 forward
            # passes where "forward" was asked (no double backward), exact Hessians for "hvp"
            method = "gauss_newton" if method == "forward" else "auto"
        with torch.autocast(z.device.type, enabled=False):
            z = _at_least_float32(z)
            if method in PROBE_METHODS:
                inside, total = block_mass(head, z, target, self.layout.own(labels), loss, method, probes)
                return probe_penalty(_at_least_float32(inside), _at_least_float32(total), labels,
                                     self.layout.num_classes, self.variant, self.reduce)
            if method == "auto" and self.mode == "class" and self.variant == "image-purity" and on_blocks(head, self.layout):
                inside, total = block_head_masses(head, z, target, labels, loss)
                return image_penalty(own_share(inside, total), labels, self.layout.num_classes, self.reduce)
            scale = z.std(0) if self.mode == "universal" else None
            return self.penalty(_at_least_float32(latent_hessian(head, z, target, loss, method)), labels, scale)

    def decoder_penalty(self, decode: Callable, z: Tensor, labels: Tensor | None = None,
                        layers: str = "output", method: str = "forward", probes: int = DEFAULT_PROBES) -> Tensor:
        """Scalar penalty on the decoder's own curvature around z (B, d), in units of each dim's batch std
        (:mod:`herd_cls.decoder_curvature`): the mean off-diagonal share (mode universal) or, per class, the
        mean of 1 - each image's own-block share (mode class). ``method`` "exact" differentiates twice;
        "forward" estimates from second differences along ``probes`` directions of each kind."""
        if self.mode == "class" and labels is None:
            raise HerdError("class-specific HeRD needs the labels of the batch")
        with torch.autocast(z.device.type, enabled=False):
            z = _at_least_float32(z)
            own = None if self.mode == "universal" else self.layout.own(labels)
            shares = curvature_shares(decode, z, layers, z.detach().std(0).clamp_min(1e-6), own,
                                      method, probes)
            if self.mode == "universal":
                return _sum(shares.sum(), self.reduce) / _sum(shares.new_tensor(float(len(shares))), self.reduce)
            return image_penalty(shares, labels, self.layout.num_classes, self.reduce)

    def extra_repr(self) -> str:
        return (f"mode={self.mode}, variant={self.variant}, "
                f"method={self.method}, layout={self.layout}")
