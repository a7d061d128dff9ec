"""HeRD's forms: how a batch's latent Hessians become one penalty. One :class:`ClassVariant` per
``--variant`` in ``CLASS_VARIANTS`` (class-specific HeRD) and one :class:`UniversalForm` per
``--universal-form`` in ``UNIVERSAL_FORMS`` (universal HeRD on a loss's Hessian);
:class:`herd_cls.regularizers.herd.HeRD` and the config ask these objects, so adding a form is one
entry here and its test (docs/guide.md shows one).

The mathematics is fixed in docs/method.md; the penalties' pure functions live in
:mod:`.herd_penalty`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..layout import BlockLayout
from ..purity import image_share, own_share
from ..registry import Registry
from .herd_penalty import (
    Reduce,
    class_penalty,
    class_purity_from_masses,
    image_penalty,
    log_impurity,
    universal_terms,
)


@dataclass(frozen=True)
class ClassVariant:
    """One formulation of class-specific HeRD.

    free: layout -> boolean (K, d, d), the Hessian entries class c may use without penalty.
    penalty: (H (B, d, d), labels (B,), mask (K, d, d) from :meth:`mask`, layout, reduce) -> scalar.
    from_masses: (inside, total, labels, K, reduce) -> scalar from per-image (B,) estimates of the
        squared Frobenius masses inside the own block and in all, for the probe curvature methods;
        None when the variant is no function of the own block's share (then probes cannot serve it).
    from_exact_masses: the same from exact masses (the block head's closed form gives them); None if
        unused.
    alpha_weights: the mask weighs off-diagonal and diagonal mass by alpha_off / (d^2 - d) and
        alpha_diag / d; otherwise by 1 / (d^2 K), so that ``class_penalty`` is the mean of 1 -
        purity.
    """

    name: str
    help: str
    free: Callable[[BlockLayout], Tensor]
    penalty: Callable[[Tensor, Tensor, Tensor, BlockLayout, Reduce | None], Tensor]
    from_masses: Callable[[Tensor, Tensor, Tensor, int, Reduce | None], Tensor] | None = None
    from_exact_masses: Callable[[Tensor, Tensor, Tensor, int, Reduce | None], Tensor] | None = None
    alpha_weights: bool = False

    def mask(self, layout: BlockLayout, alpha_off: float = 0.5, alpha_diag: float = 1.0) -> Tensor:
        """(K, d, d) penalty weights M_c for :func:`.herd_penalty.class_penalty`, 0 on the free
        region."""
        d, num_classes = layout.latent_dim, layout.num_classes
        if self.alpha_weights:
            weights = torch.full((d, d), alpha_off / (d * d - d))
            weights.fill_diagonal_(alpha_diag / d)
        else:
            weights = torch.full((d, d), 1.0 / (d * d * num_classes))
        return weights.expand(num_classes, d, d).masked_fill(self.free(layout), 0.0).contiguous()


@dataclass(frozen=True)
class UniversalForm:
    """One form of universal (label-free) HeRD: penalty(H (B, d, d) with z in units of each dim's
    batch std, alpha_off, reduce) -> scalar. It reads a loss's Hessian; ``--wrt decoder-output``
    penalises the decoder's own off-diagonal share instead (:mod:`herd_cls.decoder_curvature`)."""

    name: str
    help: str
    penalty: Callable[[Tensor, float, Reduce | None], Tensor]


CLASS_VARIANTS: Registry[ClassVariant] = Registry("HeRD variant")
UNIVERSAL_FORMS: Registry[UniversalForm] = Registry("universal HeRD form")


def _own(layout: BlockLayout) -> Tensor:
    blocks = layout.masks
    return blocks.unsqueeze(2) & blocks.unsqueeze(1)


def _eye_shared(layout: BlockLayout) -> Tensor:
    """(d, d): the shared dims' diagonal."""
    return torch.eye(layout.latent_dim, dtype=torch.bool) & ~layout.masks.any(0)


def _reference_free(layout: BlockLayout) -> Tensor:
    blocks = layout.masks
    return torch.eye(layout.latent_dim, dtype=torch.bool) & (blocks | ~blocks.any(0)).unsqueeze(1)


def _masked(H, labels, mask, layout, reduce):
    return class_penalty(H, labels, mask, False, reduce)


def _image(H, labels, mask, layout, reduce):
    return image_penalty(image_share(H, labels, layout), labels, layout.num_classes, reduce)


def _image_from_masses(inside, total, labels, num_classes, reduce):
    return image_penalty(own_share(inside, total).clamp(0, 1), labels, num_classes, reduce)


def _class_mean_from_masses(inside, total, labels, num_classes, reduce):
    return (1.0 - class_purity_from_masses(inside, total, labels, num_classes, reduce)).mean()


CLASS_VARIANTS.add(
    ClassVariant(
        "reference",
        "the original work exactly: the diagonal of the own block and of the shared dims is free, "
        "off-diagonal and other diagonal mass weighted by alpha_off and alpha_diag",
        _reference_free,
        _masked,
        alpha_weights=True,
    )
)
CLASS_VARIANTS.add(
    ClassVariant(
        "block",
        "the whole own block free (off-diagonal entries too) plus the shared diagonal",
        lambda layout: _own(layout) | _eye_shared(layout).unsqueeze(0),
        _masked,
        alpha_weights=True,
    )
)
CLASS_VARIANTS.add(
    ClassVariant(
        "purity",
        "1 - the share of the class's summed |H| inside its block (its least confident images "
        "decide it)",
        _own,
        _masked,
        _class_mean_from_masses,
    )
)
CLASS_VARIANTS.add(
    ClassVariant(
        "log-purity",
        "-log purity per class, so giving up a class costs more (it costs accuracy)",
        _own,
        lambda H, labels, mask, layout, reduce: class_penalty(H, labels, mask, True, reduce),
        lambda inside, total, labels, k, reduce: log_impurity(
            class_purity_from_masses(inside, total, labels, k, reduce)
        ),
    )
)
CLASS_VARIANTS.add(
    ClassVariant(
        "image-purity",
        "1 - each image's own-block share of its |H|, averaged per class, then over classes",
        _own,
        _image,
        _image_from_masses,
        lambda inside, total, labels, k, reduce: image_penalty(
            own_share(inside, total), labels, k, reduce
        ),
    )
)
CLASS_VARIANTS.add(
    ClassVariant(
        "dual-purity",
        "the mean of purity and image-purity",
        _own,
        lambda H, labels, mask, layout, reduce: (
            (_masked(H, labels, mask, layout, reduce) + _image(H, labels, mask, layout, reduce)) / 2
        ),
        lambda *args: (_class_mean_from_masses(*args) + _image_from_masses(*args)) / 2,
    )
)


def _balanced(H: Tensor, alpha_off: float, reduce: Reduce | None) -> Tensor:
    terms = universal_terms(H, reduce)
    return alpha_off * terms["offdiag_share"] + terms["diag_imbalance"]


UNIVERSAL_FORMS.add(
    UniversalForm(
        "balanced",
        "alpha_off times the off-diagonal share of mean |H_i|, plus the diagonal's imbalance, so "
        "that one live dim is no minimum",
        _balanced,
    )
)


def probe_variants() -> list[str]:
    """The class variants that probe estimates of block masses can serve."""
    return [
        name
        for name in CLASS_VARIANTS.names(sort=False)
        if CLASS_VARIANTS.get(name).from_masses is not None
    ]


def class_mask(
    layout: BlockLayout, alpha_off: float = 0.5, alpha_diag: float = 1.0, variant: str = "reference"
) -> Tensor:
    """(K, d, d) penalty weights M_c of ``variant`` for :func:`.herd_penalty.class_penalty`."""
    return CLASS_VARIANTS.get(variant).mask(layout, alpha_off, alpha_diag)


def universal_penalty(
    H: Tensor,
    alpha_off: float = 0.5,
    reduce: Reduce | None = None,
    scale: Tensor | None = None,
    form: str = "balanced",
) -> Tensor:
    """The universal penalty ``form`` of per-sample Hessians H (B, d, d), with z measured in units
    of ``scale`` (d,: each dim's batch std, so rescaling a dim changes nothing)."""
    if scale is not None:
        H = H * scale.unsqueeze(1) * scale.unsqueeze(0)
    return UNIVERSAL_FORMS.get(form).penalty(H, alpha_off, reduce)
