"""Hessian block purity: the one path by which training, analysis and the benchmarks measure it.

For class c with block B_c, two views of the latent Hessians H_i of its images:
- class mean: the share of sum_{i: y_i = c} |H_i| that lies inside B_c x B_c (METHOD.md's definition;
  a class's least confident images dominate it, since a confident image's curvature scales with 1 - p_y);
- per image: each image's own-block share of its own |H_i| mass, summarised per class by the mean, the
  median and the share of images at or above 0.5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor

from .metrics import class_block_purity
from .regularizer import class_abs_sum, latent_hessian, sum_losses

WRT = ("classifier", "autoencoder", "both")


def hessian_target(model, wrt: str, recon_loss: str, x: Tensor, y: Tensor):
    """(head, target, loss) whose latent Hessian ``wrt`` names: the classifier's CE, the decoder's
    reconstruction loss, or their sum."""
    if wrt == "classifier":
        return model.classify, y, "ce"
    if wrt == "autoencoder":
        return model.decode, x, recon_loss
    head, loss = sum_losses([model.classify, model.decode], ["ce", recon_loss])
    return head, (y, x), loss


def image_purity(H: Tensor, labels: Tensor, blocks: Tensor) -> Tensor:
    """(B,) each image's share of sum |H_i| inside its own block; NaN for an image without curvature."""
    own = blocks[labels]                                       # (B, d)
    inside = (H.abs() * (own.unsqueeze(2) & own.unsqueeze(1))).sum((1, 2))
    total = H.abs().sum((1, 2))
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(H.dtype).tiny),
                       torch.full_like(total, float("nan")))


@dataclass
class Purity:
    """Block purity of a set of images, both views.

    per_class: (K,) class-mean purity, NaN for a class absent from the images.
    per_image: (N,) own-block share of each image; labels: (N,) their classes.
    hbar: (K, d, d) per-class mean |H| (for heatmaps).
    method: how H was computed; samples: N.
    """

    per_class: Tensor
    per_image: Tensor
    labels: Tensor
    hbar: Tensor
    method: str

    @property
    def mean(self) -> float:
        """Mean over the classes present of the class-mean purity."""
        return float(torch.nanmean(self.per_class))

    def image_view(self) -> dict[str, list[float]]:
        """Per class: mean and median of the per-image purity, and the share of images at or above 0.5."""
        out = {"mean": [], "median": [], "share_at_least_half": []}
        for c in range(len(self.per_class)):
            p = self.per_image[(self.labels == c) & ~self.per_image.isnan()]
            empty = len(p) == 0
            out["mean"].append(float("nan") if empty else float(p.mean()))
            out["median"].append(float("nan") if empty else float(p.median()))
            out["share_at_least_half"].append(float("nan") if empty else float((p >= 0.5).float().mean()))
        return out

    def summary(self) -> dict:
        """The JSON-able numbers a run's summary.json and metrics rows keep."""
        view = self.image_view()
        return {"block_purity": self.mean, "block_purity_per_class": self.per_class.tolist(),
                "image_purity_median_per_class": view["median"],
                "image_purity_at_least_half_per_class": view["share_at_least_half"],
                "purity_method": self.method, "purity_samples": len(self.labels)}


def measure_purity(model, batches: Iterable[tuple[Tensor, Tensor]], blocks: Tensor, wrt: str = "classifier",
                   recon_loss: str = "mse", hessian_method: str = "auto", max_samples: int | None = None) -> Purity:
    """Block purity of ``model`` on the (images, labels) ``batches``, from the exact latent Hessians of
    the loss ``wrt`` names (at most ``max_samples`` images). The model's mode is left as it is."""
    device = blocks.device
    K, d = blocks.shape
    hsum, counts = torch.zeros(K, d, d, device=device), torch.zeros(K, device=device)
    per_image, labels, seen = [], [], 0
    for x, y in batches:
        if max_samples is not None:
            if seen >= max_samples:
                break
            x, y = x[:max_samples - seen], y[:max_samples - seen]
        x, y = x.to(device), y.to(device)
        with torch.no_grad():
            z = model.encode(x).float()
        head, target, loss = hessian_target(model, wrt, recon_loss, x, y)
        H = latent_hessian(head, z, target, loss, hessian_method).detach().float()
        total, count = class_abs_sum(H, y, K)
        hsum, counts = hsum + total, counts + count
        per_image.append(image_purity(H, y, blocks).cpu())
        labels.append(y.cpu())
        seen += len(y)
    hbar = hsum / counts.clamp_min(1).view(-1, 1, 1)
    return Purity(class_block_purity(hbar, blocks).cpu(), torch.cat(per_image), torch.cat(labels), hbar.cpu(),
                  f"exact ({hessian_method})")
