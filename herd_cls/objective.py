"""The training objective of one batch: the task losses, plus the regularizer's term once it ramps
in."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import Config
from .losses import per_sample_loss
from .models import LatentModel
from .regularizers import Batch, Regularizer, reparameterise


class Forward(nn.Module):
    """The training forward pass as one module call: images -> (z, mu, logvar, logits, x_hat), so
    that DistributedDataParallel can wrap it. mu and logvar are None for a deterministic latent,
    x_hat without a decoder; a variational model samples z in training mode."""

    def __init__(self, model: LatentModel):
        super().__init__()
        self.model = model

    def forward(self, x):
        m, mu, logvar = self.model, None, None
        if m.variational:
            mu, logvar = m.encode_distribution(x)
            z = reparameterise(mu, logvar) if m.training else mu
        else:
            z = m.encode(x)
        return z, mu, logvar, m.classify(z), m.decode(z) if m.decode is not None else None


def batch_losses(
    model: LatentModel,
    cfg: Config,
    x,
    y,
    amp: torch.dtype | None = None,
    reg: Regularizer | None = None,
    ramp: float = 0.0,
    forward=None,
) -> dict:
    """All loss terms of one batch; ``loss`` is what is minimised, with ``ramp`` times the
    regularizer's term when a regularizer is given and ``ramp > 0``. ``amp``: the autocast dtype, or
    None;
    ``forward``: the (possibly distributed) :class:`Forward` of ``model``."""
    with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
        z, mu, logvar, logits, x_hat = (forward or Forward(model))(x)
        ce = F.cross_entropy(logits.float(), y)
        recon = None
        if x_hat is not None:
            x_hat = x_hat.float()
            # a diverged run must reach the trainer's NaN check, not a RuntimeError from
            # F.binary_cross_entropy
            recon = (
                per_sample_loss(cfg.recon_loss)(x_hat, x).mean()
                if torch.isfinite(x_hat).all()
                else x_hat.new_tensor(float("nan"))
            )
    loss = cfg.alpha_cl * ce + (cfg.alpha_ae * recon if recon is not None else 0.0)
    as_float = lambda t: None if t is None else t.float()
    batch = Batch(x, y, z.float(), as_float(mu), as_float(logvar))
    penalty = None
    # a non-finite loss skips the regularizer, which may run the decoder's loss again on NaN images
    if reg is not None and ramp > 0 and torch.isfinite(loss):
        with torch.autocast(x.device.type, enabled=False):  # curvature and KL terms in float32
            penalty, term = reg.loss(model, batch)
        loss = loss + ramp * term
    return {
        "loss": loss,
        "ce": ce,
        "recon": recon,
        "penalty": penalty,
        "batch": batch,
        "correct": (logits.argmax(1) == y).sum(),
    }
