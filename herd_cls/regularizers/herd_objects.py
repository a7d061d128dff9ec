"""HeRD's ``--reg`` entries: class-specific (``class``) and universal (``universal``), each a
:class:`~herd_cls.regularizers.herd.HeRD` module on the model's block layout, on the latent Hessian
of the loss ``--wrt`` names (or on the decoder's own curvature), with their options and checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..curvature import CURVATURE_METHODS
from ..decoder_curvature import (
    DEFAULT_PROBES,
    LAYERS as DECODER_LAYERS,
    METHODS as DECODER_CURVATURE,
)
from ..derivatives import coupling_norm
from ..heads import HEADS
from ..options import option
from ..registry import HerdError
from ..targets import TARGETS
from .base import REGULARIZERS, Regularizer
from .herd import HeRD
from .herd_forms import CLASS_VARIANTS, UNIVERSAL_FORMS, probe_variants

# --hessian-method choices of --wrt decoder-output; auto is the forward estimate
DECODER_METHODS = ("auto", *DECODER_CURVATURE.names(sort=False))

# HeRD with the decoder's Hessian on 16 images of a batch: under 2x a plain step on the conv
# autoencoder, with purity unchanged (docs/performance.md); the shapes configs set 32
DECODER_PENALTY_SAMPLES = 16


@dataclass
class HeRDOptions:
    """The options of ``--reg class`` and ``--reg universal``."""

    variant: str = option(
        "image-purity",
        "Class-specific formulation: {choices}.",
        CLASS_VARIANTS,
    )
    universal_form: str = option(
        "balanced",
        "Universal HeRD's form on a loss's Hessian (--wrt classifier; decoder-output penalises the "
        "decoder's own off-diagonal share): {choices}. The other forms measured are retired "
        "(docs/what-did-not-work.md).",
        UNIVERSAL_FORMS,
    )
    wrt: str = option(
        "classifier",
        "Whose curvature HeRD shapes: {choices}.",
        TARGETS,
    )
    decoder_layers: str = option(
        "output",
        "With --wrt decoder-output, whose curvature: the decoded image (output), the decoder's "
        "hidden activations (hidden) or both (all).",
        DECODER_LAYERS,
    )
    alpha_off: float = option(
        0.5,
        "Weight of off-diagonal Hessian mass in the mask (reference, block) and in the universal "
        "form.",
        bound="non-negative",
    )
    alpha_diag: float = option(
        1.0,
        "Weight of out-of-block diagonal Hessian mass in the mask (reference, block).",
        bound="non-negative",
    )
    probes: int | None = option(
        None,
        "Probe count of a probe --hessian-method (forward 1, hvp 2); with 'auto' on the "
        "classifier's loss it selects HVP probes (purity variants only).",
        bound="positive",
    )
    hessian_method: str = option("auto", "How curvature is computed: {choices}.", CURVATURE_METHODS)


class _HeRDRegularizer(Regularizer):
    """A ``HeRD`` module on the model's block layout, on the latent Hessian of the loss ``--wrt``
    names.

    Where that Hessian includes the decoder's (``--wrt autoencoder`` or ``both``), the weight is per
    image, not per pixel: the penalty is divided by the pixel count, as the VAE terms are, so that
    it sits on the scale of the per-pixel-mean reconstruction. Weighted per pixel, the decoder
    collapsed to a blank image in every measured run (docs/what-did-not-work.md): a decoder that
    ignores z has no curvature to penalise.
    """

    mode: ClassVar[str] = "class"
    family = "HeRD"
    Options = HeRDOptions

    def __init__(self, cfg, model, dataset_size, reduce=None):
        super().__init__(cfg, model, dataset_size, reduce)
        o = self.options
        self.wrt = TARGETS.get(o.wrt)
        # on the decoder's own curvature, its method and probes are read here, not by HeRD's
        own = self.wrt.own
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
        method = o.hessian_method
        self.decoder_method = method if method in DECODER_CURVATURE else "forward"
        self.decoder_probes = o.probes or DEFAULT_PROBES
        self.recon_loss, self.decoder_layers = cfg.recon_loss, o.decoder_layers
        heads = {
            "classifier": model.classify if self.wrt.classifier else None,
            "decoder": model.decode if self.wrt.decoder else None,
        }
        for which, head in heads.items():
            if head is None:
                continue
            norm = coupling_norm(head, in_eval_too=True)
            # batch statistics couple the samples: no per-sample Hessian exists
            if norm is not None:
                raise HerdError(
                    f"--reg {self.name} needs per-sample Hessians, but the {which} head has "
                    f"{type(norm).__name__}, whose batch statistics couple the samples; use --head "
                    "block or --head mlp"
                )

    @classmethod
    def default_penalty_samples(cls, cfg) -> int | None:
        return DECODER_PENALTY_SAMPLES if TARGETS.get(cfg.wrt).decoder else None

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        target = TARGETS.get(cfg.wrt)
        if target.decoder and not cfg.decoder:
            raise HerdError(f"--wrt {cfg.wrt} needs a decoder; add --decoder")
        if target.own and cfg.hessian_method not in DECODER_METHODS:
            raise HerdError(
                "--wrt decoder-output computes its curvature exactly (exact) or from second "
                f"differences (auto or forward), not {cfg.hessian_method}; use one of "
                f"{', '.join(DECODER_METHODS)}"
            )
        if target.own and cfg.probes is not None and cfg.probes < 2:
            raise HerdError(
                f"--probes with --wrt decoder-output needs at least 2 directions of each kind, got "
                f"{cfg.probes}"
            )

    def loss(self, model, batch):
        batch = batch.head(self.penalty_samples)
        per_image = batch.x[0].numel() if self.wrt.decoder else 1
        if self.wrt.own:
            penalty = self.herd.decoder_penalty(
                model.decode,
                batch.z,
                batch.y,
                self.decoder_layers,
                self.decoder_method,
                self.decoder_probes,
            )
            return penalty, self.weight * penalty / per_image
        head, target, loss = self.wrt.loss_hessian(model, self.recon_loss, batch.x, batch.y)
        penalty = self.herd(head, batch.z, target, labels=batch.y, loss=loss)
        return penalty, self.weight * penalty / per_image

    def to(self, device):
        self.herd.to(device)
        return self


@REGULARIZERS.add
class ClassHeRD(_HeRDRegularizer):
    name = "class"
    help = "class-specific HeRD: each class's curvature in its own latent block"
    default_weight = 1.0

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if TARGETS.get(cfg.wrt).own:
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
        if not TARGETS.get(cfg.wrt).reads_classifier:
            return []
        warning = HEADS.get(cfg.head).class_herd_warning
        if warning:
            return [warning]
        return []


@REGULARIZERS.add
class UniversalHeRD(_HeRDRegularizer):
    name = "universal"
    help = "universal HeRD: an axis-aligned (diagonal) latent Hessian, no labels"
    default_weight = 5.0
    mode = "universal"

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        retired = TARGETS.get(cfg.wrt).universal_retired
        if retired:
            raise HerdError(f"--reg universal --wrt {cfg.wrt} is retired: {retired}")
