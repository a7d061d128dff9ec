"""HeRD: the :class:`HeRD` module, usable from any training loop (its ``--reg`` entries are in
:mod:`herd_cls.regularizers.herd_objects`).

>>> herd = HeRD(BlockLayout(num_classes=10, dims_per_class=2))
>>> loss = F.cross_entropy(head(z), y) + herd(head, z, y, labels=y, loss="ce")  # differentiable
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..block_curvature import block_head_masses, on_blocks
from ..curvature import CURVATURE_METHODS, block_mass, curvature_method, latent_hessian
from ..derivatives import has_closed_form
from ..decoder_curvature import DEFAULT_PROBES, curvature_shares
from ..layout import BlockLayout
from ..losses import Loss
from ..registry import HerdError
from .herd_forms import CLASS_VARIANTS, UNIVERSAL_FORMS, probe_variants
from .herd_penalty import Reduce, image_penalty, summed

MODES = {"class": CLASS_VARIANTS, "universal": UNIVERSAL_FORMS}  # mode -> the registry of its forms


def _at_least_float32(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class HeRD(nn.Module):
    """Class-specific (or universal) Hessian regularizer for disentanglement.

    Args:
        layout: the class blocks (:class:`~herd_cls.layout.BlockLayout`); mode "universal" reads
            only its ``latent_dim``.
        mode: ``"class"`` (class blocks) or ``"universal"`` (diagonal Hessian, no labels used).
        alpha_off, alpha_diag: weights of off-diagonal and out-of-block diagonal mass (reference,
            block; alpha_off also weighs the universal form's off-diagonal share).
        variant: mode "class"'s formulation, a name in :data:`.herd_forms.CLASS_VARIANTS`:
            ``"image-purity"``
            (the default: 1 - each image's own-block share of its |H|, averaged per class, then over
            classes, so confident images count as much as uncertain ones), ``"purity"``,
            ``"dual-purity"``, ``"log-purity"``, ``"reference"`` (the original research code's) or
            ``"block"``.
        form: mode "universal"'s form, a name in :data:`.herd_forms.UNIVERSAL_FORMS`.
        method: how curvature is computed (:data:`herd_cls.curvature.CURVATURE_METHODS`); ``"auto"``
            picks by :func:`herd_cls.curvature.curvature_method`. The probe methods (``"forward"``,
            ``"hvp"``) estimate squared block masses, with mode "class" and a variant that is a
            function of them; in mode "universal" they compute the whole matrix the same way
            (``"forward"``: Gauss-Newton).
        probes: the probe count of a probe method.
        reduce: sums per-class statistics over processes (e.g.
            ``herd_cls.distributed.all_reduce_sum``).
    """

    def __init__(
        self,
        layout: BlockLayout,
        mode: str = "class",
        alpha_off: float = 0.5,
        alpha_diag: float = 1.0,
        variant: str = "image-purity",
        probes: int | None = None,
        method: str = "auto",
        reduce: Reduce | None = None,
        form: str = "balanced",
    ):
        super().__init__()
        if mode not in MODES:
            raise HerdError(f"unknown HeRD mode {mode!r}; choose one of: {', '.join(MODES)}")
        self.form = MODES[mode].get(variant if mode == "class" else form)
        if (probes is not None or CURVATURE_METHODS.get(method).probes) and (
            mode != "class" or self.form.from_masses is None
        ):
            raise HerdError(
                "probes estimate block purity: use them with mode 'class' and a variant of: "
                + ", ".join(probe_variants())
            )
        self.layout, self.mode, self.probes, self.method = (
            layout,
            mode,
            probes,
            method,
        )
        self.alpha_off, self.alpha_diag, self.reduce = alpha_off, alpha_diag, reduce
        self.register_buffer(
            "mask",
            self.form.mask(layout, alpha_off, alpha_diag) if mode == "class" else None,
            persistent=False,
        )

    def penalty(
        self, H: Tensor, labels: Tensor | None = None, scale: Tensor | None = None
    ) -> Tensor:
        """The penalty of precomputed Hessians H (B, d, d), e.g. a sum of several losses' Hessians;
        ``scale`` (d,): the latent dims' batch std, for the universal penalty."""
        if self.mode == "universal":
            if scale is not None:
                H = H * scale.unsqueeze(1) * scale.unsqueeze(0)
            return self.form.penalty(H, self.alpha_off, self.reduce)
        return self.form.penalty(H, labels, self.mask, self.layout, self.reduce)

    def forward(
        self, head: Callable, z: Tensor, target, labels: Tensor | None = None, loss: Loss = "ce"
    ) -> Tensor:
        """Scalar penalty for ``loss(head(z), target)``; ``labels`` pick each sample's block.
        Computed in float32, also inside a mixed-precision autocast region."""
        if self.mode == "class" and labels is None:
            raise HerdError("class-specific HeRD needs the labels of the batch")
        method, probes = curvature_method(
            self.method, loss, z.shape[1], self.probes, has_closed_form(head, loss)
        )
        if self.mode == "universal" and CURVATURE_METHODS.get(method).probes:
            method = CURVATURE_METHODS.get(method).whole  # the universal penalty reads every entry
        num_classes = self.layout.num_classes
        with torch.autocast(z.device.type, enabled=False):
            z = _at_least_float32(z)
            if CURVATURE_METHODS.get(method).probes:
                inside, total = block_mass(
                    head, z, target, self.layout.own(labels), loss, method, probes
                )
                return self.form.from_masses(
                    _at_least_float32(inside),
                    _at_least_float32(total),
                    labels,
                    num_classes,
                    self.reduce,
                )
            if (
                method == "auto"
                and self.mode == "class"
                and self.form.from_exact_masses is not None
                and on_blocks(head, self.layout)
            ):
                inside, total = block_head_masses(head, z, target, labels, loss)
                return self.form.from_exact_masses(inside, total, labels, num_classes, self.reduce)
            scale = z.std(0) if self.mode == "universal" else None
            return self.penalty(
                _at_least_float32(latent_hessian(head, z, target, loss, method)), labels, scale
            )

    def decoder_penalty(
        self,
        decode: Callable,
        z: Tensor,
        labels: Tensor | None = None,
        layers: str = "output",
        method: str = "forward",
        probes: int = DEFAULT_PROBES,
    ) -> Tensor:
        """Scalar penalty on the decoder's own curvature around z (B, d), in units of each dim's
        batch std (:mod:`herd_cls.decoder_curvature`): the mean off-diagonal share (mode universal)
        or, per class, the mean of 1 - each image's own-block share (mode class). ``method`` "exact"
        differentiates twice; "forward" estimates from second differences along ``probes``
        directions of each kind."""
        if self.mode == "class" and labels is None:
            raise HerdError("class-specific HeRD needs the labels of the batch")
        with torch.autocast(z.device.type, enabled=False):
            z = _at_least_float32(z)
            own = None if self.mode == "universal" else self.layout.own(labels)
            shares = curvature_shares(
                decode, z, layers, z.detach().std(0).clamp_min(1e-6), own, method, probes
            )
            if self.mode == "universal":
                return summed(shares.sum(), self.reduce) / summed(
                    shares.new_tensor(float(len(shares))), self.reduce
                )
            return image_penalty(shares, labels, self.layout.num_classes, self.reduce)

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode}, form={self.form.name}, method={self.method}, layout={self.layout}"
        )
