"""Evaluation after every epoch and at the end of training: loss, accuracy, reconstruction error and
block purity on a split, and how many of its images purity is measured on."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .config import Config
from .curvature import AUTO_EXACT_MAX_DIM
from .derivatives import has_closed_form
from .models import LatentModel
from .objective import batch_losses
from .purity import measure_purity
from .targets import TARGETS

EVAL_HESSIAN_SAMPLES = 512  # Hessians for block purity are measured on at most this many samples
# exact Hessians cost d products per image (none for a block head's closed form): a decoder or wide
# latent measures fewer
VAL_DECODER_HESSIAN_SAMPLES = 128
WIDE_HESSIAN_SAMPLES = {"val": 32, "test": 256}


def hessian_samples(model: LatentModel, cfg: Config, split: str) -> int:
    """How many images of ``split`` ("val" or "test") purity is measured on."""
    if model.latent_dim > AUTO_EXACT_MAX_DIM and not (
        not TARGETS.get(cfg.wrt).decoder and has_closed_form(model.classify, "ce")
    ):
        return WIDE_HESSIAN_SAMPLES[split]
    return (
        EVAL_HESSIAN_SAMPLES
        if split == "test" or not TARGETS.get(cfg.wrt).decoder
        else VAL_DECODER_HESSIAN_SAMPLES
    )


@torch.no_grad()
def evaluate(
    model: LatentModel,
    cfg: Config,
    loader: DataLoader,
    device: torch.device,
    hessian_samples: int = EVAL_HESSIAN_SAMPLES,
) -> dict:
    """Loss, accuracy and reconstruction error on ``loader``, and block purity on its first
    ``hessian_samples`` images (see :mod:`herd_cls.purity`)."""
    model.eval()
    sums = {"loss": 0.0, "ce": 0.0, "recon": 0.0, "correct": 0.0}
    n = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = batch_losses(model, cfg, x, y)
        n += len(y)
        for k in ("loss", "ce", "recon"):
            if out[k] is not None:
                sums[k] += float(out[k]) * len(y)
        sums["correct"] += float(out["correct"])
    with torch.enable_grad():
        purity = measure_purity(
            model, loader, model.layout, cfg.wrt, cfg.recon_loss, max_samples=hessian_samples
        )
    return {
        "loss": sums["loss"] / n,
        "accuracy": sums["correct"] / n,
        "ce": sums["ce"] / n,
        "recon": sums["recon"] / n if model.decode else None,
        **purity.summary(),
    }
