"""HeRD as ``--reg``: class-specific (``class``) or universal (``universal``) curvature penalties."""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..curvature import PROBE_METHODS
from ..purity import WRT, hessian_target
from ..registry import HerdError
from .base import REGULARIZERS, Regularizer
from .herd_penalty import PURITY_VARIANTS, HeRD


class _HeRDRegularizer(Regularizer):
    """A ``HeRD`` module on the model's block layout, on the latent Hessian of the loss ``--wrt`` names.

    Where that Hessian includes the decoder's (``--wrt autoencoder`` or ``both``), the weight is per image,
    not per pixel: the penalty is divided by the pixel count, as the VAE terms are, so that it sits on the
    scale of the per-pixel-mean reconstruction. Weighted per pixel, the decoder collapsed to a blank image in
    every measured run (docs/what-did-not-work.md): a decoder that ignores z has no curvature to penalise.
    """

    mode: ClassVar[str] = "class"

    def __init__(self, cfg, model, dataset_size, reduce=None):
        super().__init__(cfg, model, dataset_size, reduce)
        self.herd = HeRD(model.layout, mode=self.mode, alpha_off=cfg.alpha_off, alpha_diag=cfg.alpha_diag,
                         variant=cfg.variant, probes=cfg.probes, method=cfg.hessian_method, reduce=reduce,
                         universal_form=cfg.universal_form)
        self.wrt, self.recon_loss = cfg.wrt, cfg.recon_loss
        heads = {"classifier": model.classify if self.wrt != "autoencoder" else None,
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

    def loss(self, model, batch):
        batch = batch.head(self.penalty_samples)
        head, target, loss = hessian_target(model, self.wrt, self.recon_loss, batch.x, batch.y)
        penalty = self.herd(head, batch.z, target, labels=batch.y, loss=loss)
        per_image = batch.x[0].numel() if self.wrt != "classifier" else 1
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
        if (cfg.probes is not None or cfg.hessian_method in PROBE_METHODS) and cfg.variant not in PURITY_VARIANTS:
            raise HerdError("--probes and probe methods estimate block purity; use them with --variant "
                            + " or ".join(PURITY_VARIANTS))


    @classmethod
    def warnings(cls, cfg) -> list[str]:
        if cfg.wrt == "autoencoder":
            return []
        if cfg.head == "linear":
            return ["--reg class with --head linear cannot give each class its own curvature: a linear head's "
                    "Hessian W^T (diag p - p p^T) W spans every block (docs/method.md); use --head block"]
        if cfg.head == "mlp":
            return ["--reg class with --head mlp keeps purity low: every logit reads every latent dim, so "
                    "curvature leaks across blocks (near chance on pre-logits, docs/what-did-not-work.md); use "
                    "--head block"]
        return []


@REGULARIZERS.register("universal")
class UniversalHeRD(_HeRDRegularizer):
    name, help = "universal", "universal HeRD: an axis-aligned (diagonal) latent Hessian, no labels"
    default_weight = 5.0
    mode = "universal"
