"""HeRD as ``--reg``: class-specific (``class``) or universal (``universal``) curvature penalties."""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..curvature import PROBE_METHODS
from ..decoder_curvature import DEFAULT_PROBES
from ..heads import HEADS
from ..purity import WRT, hessian_target
from ..registry import HerdError
from .base import REGULARIZERS, Regularizer
from .herd_penalty import PURITY_VARIANTS, HeRD

DECODER_METHODS = ("auto", "exact", "forward")  # --hessian-method choices of --wrt decoder-output


class _HeRDRegularizer(Regularizer):
    """A ``HeRD`` module on the model's block layout, on the latent Hessian of the loss ``--wrt`` names.

    Where that Hessian includes the decoder's (``--wrt autoencoder`` or ``both``), the weight is per image,
    not per pixel: the penalty is divided by the pixel count, as the VAE terms are, so that it sits on the
    scale of the per-pixel-mean reconstruction. Weighted per pixel, the decoder collapsed to a blank image in
    every measured run (docs/what-did-not-work.md): a decoder that ignores z has no curvature to penalise.
    """

    mode: ClassVar[str] = "class"
    family = "HeRD"

    def __init__(self, cfg, model, dataset_size, reduce=None):
        super().__init__(cfg, model, dataset_size, reduce)
        own = cfg.wrt == "decoder-output"  # the decoder's own curvature: its method and probes are read here
        self.herd = HeRD(model.layout, mode=self.mode, alpha_off=cfg.alpha_off, alpha_diag=cfg.alpha_diag,
                         variant=cfg.variant, probes=None if own else cfg.probes,
                         method="auto" if own else cfg.hessian_method, reduce=reduce)
        self.decoder_method = "exact" if cfg.hessian_method == "exact" else "forward"
        self.decoder_probes = cfg.probes or DEFAULT_PROBES
        self.wrt, self.recon_loss, self.decoder_layers = cfg.wrt, cfg.recon_loss, cfg.decoder_layers
        heads = {"classifier": model.classify if self.wrt in ("classifier", "both") else None,
                 "decoder": model.decode if self.wrt != "classifier" else None}
        for which, head in heads.items():
            if head is None:
                continue
            norm = next((m for m in head.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)), None)
            if norm is not None:  # batch statistics couple the samples: no per-sample Hessian exists
                raise HerdError(f"--reg {self.name} needs per-sample Hessians, but the {which} head has "
                                f"{type(norm).__name__}, whose batch statistics couple the samples; "
                                "use --head block or --head mlp")

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.wrt not in WRT:
            raise HerdError(f"--wrt must be one of {', '.join(WRT)}, got {cfg.wrt!r}")
        if cfg.wrt != "classifier" and not cfg.decoder:
            raise HerdError(f"--wrt {cfg.wrt} needs a decoder; add --decoder")
        if cfg.wrt == "decoder-output" and cfg.hessian_method not in DECODER_METHODS:
            raise HerdError(f"--wrt decoder-output computes its curvature exactly (exact) or from second differences "
                            f"(auto or forward), not {cfg.hessian_method}; use one of {', '.join(DECODER_METHODS)}")
        if cfg.wrt == "decoder-output" and cfg.probes is not None and cfg.probes < 2:
            raise HerdError(f"--probes with --wrt decoder-output needs at least 2 directions of each kind, got {cfg.probes}")

    def loss(self, model, batch):
        batch = batch.head(self.penalty_samples)
        per_image = batch.x[0].numel() if self.wrt != "classifier" else 1
        if self.wrt == "decoder-output":
            penalty = self.herd.decoder_penalty(model.decode, batch.z, batch.y, self.decoder_layers,
                                                self.decoder_method, self.decoder_probes)
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
                raise HerdError("--wrt decoder-output penalises each image's own-block share of the decoder's "
                                "curvature: use --variant image-purity (the default)")
        elif (cfg.probes is not None or cfg.hessian_method in PROBE_METHODS) and cfg.variant not in PURITY_VARIANTS:
            raise HerdError("--probes and probe methods estimate block purity; use them with --variant "
                            + " or ".join(PURITY_VARIANTS))


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
            raise HerdError(f"--reg universal --wrt {cfg.wrt} is retired: on the reconstruction loss's Hessian (about "
                            "2 J^T J) every form measured lowered MIG below the plain autoencoder's "
                            "(docs/what-did-not-work.md); use --wrt decoder-output, the decoder's own curvature")
