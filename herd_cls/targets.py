"""Whose latent curvature HeRD shapes and purity reads: one ``--wrt`` target per entry."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .curvature import sum_losses
from .registry import Registry


@dataclass(frozen=True)
class CurvatureTarget:
    """One ``--wrt``. classifier: the classifier's cross-entropy is in the Hessian; decoder: it
    needs a decoder (its reconstruction loss is in the Hessian, or, with ``own``, the decoder's own
    curvature: the Hessians of its activations, no loss's); universal_retired: why universal HeRD no
    longer takes it (None: it does)."""

    name: str
    help: str
    classifier: bool
    decoder: bool
    own: bool = False
    universal_retired: str | None = None

    @property
    def reads_classifier(self) -> bool:
        """Purity reads the classifier's curvature (its loss is in the Hessian, or the target is the
        decoder's own curvature, which is no loss's)."""
        return self.classifier or self.own

    def loss_hessian(self, model, recon_loss: str, x: Tensor, y: Tensor):
        """(head, target, loss) of the loss whose latent Hessian this target reads: the classifier's
        CE, the decoder's reconstruction loss, or their sum. The decoder's own curvature is no
        loss's: purity reads the classifier's there."""
        if self.own or not self.decoder:  # the classifier's alone
            return model.classify, y, "ce"
        if not self.classifier:
            return model.decode, x, recon_loss
        head, loss = sum_losses([model.classify, model.decode], ["ce", recon_loss])
        return head, (y, x), loss


_UNIVERSAL_RETIRED = (
    "on the reconstruction loss's Hessian (about 2 J^T J) every form measured lowered MIG below "
    "the plain autoencoder's (docs/what-did-not-work.md); use --wrt decoder-output, the decoder's "
    "own curvature"
)
TARGETS: Registry[CurvatureTarget] = Registry("--wrt target")
TARGETS.add(
    CurvatureTarget("classifier", "the latent Hessian of the classifier's loss", True, False)
)
TARGETS.add(
    CurvatureTarget(
        "autoencoder",
        "of the decoder's reconstruction loss",
        False,
        True,
        universal_retired=_UNIVERSAL_RETIRED,
    )
)
TARGETS.add(
    CurvatureTarget("both", "of their sum", True, True, universal_retired=_UNIVERSAL_RETIRED)
)
TARGETS.add(
    CurvatureTarget(
        "decoder-output",
        "the decoder's own curvature: the Hessians of its activations, in units of each latent "
        "dim's batch std (docs/method.md)",
        False,
        True,
        own=True,
    )
)
