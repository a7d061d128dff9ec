"""HeRD: the :class:`HeRD` module (usable from any training loop) and its ``--reg`` entries,
class-specific (``class``) and universal (``universal``).

>>> herd = HeRD(BlockLayout(num_classes=10, dims_per_class=2))
>>> loss = F.cross_entropy(head(z), y) + herd(head, z, y, labels=y, loss="ce")    # scalar,
differentiable
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import Tensor, nn

from ..block_curvature import block_head_masses, on_blocks
from ..curvature import (
    CURVATURE_METHODS,
    block_mass,
    curvature_method,
    has_closed_form,
    latent_hessian,
)
from ..derivatives import coupling_norm
from ..decoder_curvature import DEFAULT_PROBES, LAYERS as DECODER_LAYERS, curvature_shares
from ..heads import HEADS
from ..layout import BlockLayout
from ..losses import Loss
from ..options import entries, option
from ..purity import WRT, hessian_target
from ..registry import HerdError
from .base import REGULARIZERS, Regularizer
from .herd_forms import CLASS_VARIANTS, UNIVERSAL_FORMS, probe_variants
from .herd_penalty import Reduce, image_penalty, summed

MODES = {"class": CLASS_VARIANTS, "universal": UNIVERSAL_FORMS}  # mode -> the registry of its forms
DECODER_METHODS = ("auto", "exact", "forward")  # --hessian-method choices of --wrt decoder-output


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
        self.layout, self.mode, self.variant, self.probes, self.method = (
            layout,
            mode,
            variant,
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


# HeRD with the decoder's Hessian on 16 images of a batch: under 2x a plain step on the conv
# autoencoder,
# with purity unchanged (docs/performance.md); the shapes configs set 32
DECODER_PENALTY_SAMPLES = 16


@dataclass
class HeRDOptions:
    """The options of ``--reg class`` and ``--reg universal``."""

    variant: str = option(
        "image-purity",
        "Class-specific formulation: " + entries(CLASS_VARIANTS) + ".",
        CLASS_VARIANTS,
    )
    universal_form: str = option(
        "balanced",
        "Universal HeRD's form on a loss's Hessian (--wrt classifier; "
        "decoder-output penalises the decoder's own off-diagonal share): "
        + entries(UNIVERSAL_FORMS)
        + ". The other forms measured are retired "
        "(docs/what-did-not-work.md).",
        UNIVERSAL_FORMS,
    )
    wrt: str = option(
        "classifier",
        "Whose curvature HeRD shapes: the latent Hessian of the classifier's loss, of the "
        "decoder's reconstruction loss (autoencoder), of their sum (both), or the "
        "decoder's own curvature (decoder-output: the Hessians of its activations, in "
        "units of each latent dim's batch std; docs/method.md).",
        WRT,
    )
    decoder_layers: str = option(
        "output",
        "With --wrt decoder-output, whose curvature: the decoded image (output), "
        "the decoder's hidden activations (hidden) or both (all).",
        DECODER_LAYERS,
    )
    alpha_off: float = option(
        0.5,
        "Weight of off-diagonal Hessian mass in the mask (reference, block) and in the "
        "universal form.",
        bound="non-negative",
    )
    alpha_diag: float = option(
        1.0,
        "Weight of out-of-block diagonal Hessian mass in the mask (reference, block).",
        bound="non-negative",
    )
    probes: int | None = option(
        None,
        "Probe count of a probe --hessian-method (forward 1, hvp 2); with 'auto' on "
        "the classifier's loss it selects HVP probes (purity variants only).",
        bound="positive",
    )
    hessian_method: str = option(
        "auto", "How curvature is computed: " + entries(CURVATURE_METHODS) + ".", CURVATURE_METHODS
    )


class _HeRDRegularizer(Regularizer):
    """A ``HeRD`` module on the model's block layout, on the latent Hessian of the loss ``--wrt``
    names.

    Where that Hessian includes the decoder's (``--wrt autoencoder`` or ``both``), the weight is per
    image,
    not per pixel: the penalty is divided by the pixel count, as the VAE terms are, so that it sits
    on the scale of the per-pixel-mean reconstruction. Weighted per pixel, the decoder collapsed to
    a blank image in every measured run (docs/what-did-not-work.md): a decoder that ignores z has no
    curvature to penalise.
    """

    mode: ClassVar[str] = "class"
    family = "HeRD"
    Options = HeRDOptions

    def __init__(self, cfg, model, dataset_size, reduce=None):
        super().__init__(cfg, model, dataset_size, reduce)
        o = self.options
        # the decoder's own curvature: its method and probes are read here
        own = o.wrt == "decoder-output"
        self.herd = HeRD(
            model.layout,
            mode=self.mode,
            alpha_off=o.alpha_off,
            alpha_diag=o.alpha_diag,
            variant=o.variant,
            probes=None if own else o.probes,
            method="auto" if own else o.hessian_method,
            reduce=reduce,
            form=o.universal_form,
        )
        self.decoder_method = "exact" if o.hessian_method == "exact" else "forward"
        self.decoder_probes = o.probes or DEFAULT_PROBES
        self.wrt, self.recon_loss, self.decoder_layers = o.wrt, cfg.recon_loss, o.decoder_layers
        heads = {
            "classifier": model.classify if self.wrt in ("classifier", "both") else None,
            "decoder": model.decode if self.wrt != "classifier" else None,
        }
        for which, head in heads.items():
            if head is None:
                continue
            norm = coupling_norm(head, in_eval_too=True)
            if (
                norm is not None
            ):  # batch statistics couple the samples: no per-sample Hessian exists
                raise HerdError(
                    f"--reg {self.name} needs per-sample Hessians, but the {which} head has "
                    f"{type(norm).__name__}, whose batch statistics couple the samples; "
                    "use --head block or --head mlp"
                )

    @classmethod
    def default_penalty_samples(cls, cfg) -> int | None:
        return DECODER_PENALTY_SAMPLES if cfg.wrt != "classifier" else None

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.wrt not in WRT:
            raise HerdError(f"--wrt must be one of {', '.join(WRT)}, got {cfg.wrt!r}")
        if cfg.wrt != "classifier" and not cfg.decoder:
            raise HerdError(f"--wrt {cfg.wrt} needs a decoder; add --decoder")
        if cfg.wrt == "decoder-output" and cfg.hessian_method not in DECODER_METHODS:
            raise HerdError(
                f"--wrt decoder-output computes its curvature exactly (exact) or from second "
                f"differences "
                f"(auto or forward), not {cfg.hessian_method}; use one of "
                f"{', '.join(DECODER_METHODS)}"
            )
        if cfg.wrt == "decoder-output" and cfg.probes is not None and cfg.probes < 2:
            raise HerdError(
                f"--probes with --wrt decoder-output needs at least 2 directions of each kind, got "
                f"{cfg.probes}"
            )

    def loss(self, model, batch):
        batch = batch.head(self.penalty_samples)
        per_image = batch.x[0].numel() if self.wrt != "classifier" else 1
        if self.wrt == "decoder-output":
            penalty = self.herd.decoder_penalty(
                model.decode,
                batch.z,
                batch.y,
                self.decoder_layers,
                self.decoder_method,
                self.decoder_probes,
            )
            return penalty, self.weight * penalty / per_image
        head, target, loss = hessian_target(model, self.wrt, self.recon_loss, batch.x, batch.y)
        penalty = self.herd(head, batch.z, target, labels=batch.y, loss=loss)
        return penalty, self.weight * penalty / per_image

    def to(self, device):
        self.herd.to(device)
        return self


@REGULARIZERS.register("class")
class ClassHeRD(_HeRDRegularizer):
    name, help = "class", "class-specific HeRD: each class's curvature in its own latent block"
    default_weight = 1.0

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.wrt == "decoder-output":
            if cfg.variant != "image-purity":
                raise HerdError(
                    "--wrt decoder-output penalises each image's own-block share of the decoder's "
                    "curvature: use --variant image-purity (the default)"
                )
        elif (
            cfg.probes is not None or CURVATURE_METHODS.get(cfg.hessian_method).probes
        ) and CLASS_VARIANTS.get(cfg.variant).from_masses is None:
            raise HerdError(
                "--probes and probe methods estimate block purity; use them with --variant "
                + " or ".join(probe_variants())
            )

    @classmethod
    def warnings(cls, cfg) -> list[str]:
        if cfg.wrt == "autoencoder":
            return []
        warning = HEADS.get(cfg.head).class_herd_warning
        if warning:
            return [warning]
        return []


@REGULARIZERS.register("universal")
class UniversalHeRD(_HeRDRegularizer):
    name, help = "universal", "universal HeRD: an axis-aligned (diagonal) latent Hessian, no labels"
    default_weight = 5.0
    mode = "universal"

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.wrt in ("autoencoder", "both"):
            raise HerdError(
                f"--reg universal --wrt {cfg.wrt} is retired: on the reconstruction loss's Hessian "
                f"(about "
                "2 J^T J) every form measured lowered MIG below the plain autoencoder's "
                "(docs/what-did-not-work.md); use --wrt decoder-output, the decoder's own curvature"
            )
