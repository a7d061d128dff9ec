"""Hessian block purity: the one path by which training, analysis and the benchmarks measure it.

For class c with block B_c, two views of the latent Hessians H_i of its images:
- class mean: the share of sum_{i: y_i = c} |H_i| that lies inside B_c x B_c (docs/method.md's
  definition; a class's least confident images dominate it, since a confident image's curvature
  scales with 1 - p_y);
- per image: each image's own-block share of its own |H_i| mass, summarised per class by the mean,
  the median and the share of images at or above 0.5.

:func:`own_share` is the one place the ratio is formed; the HeRD penalties and the metrics call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .curvature import CURVATURE_METHODS, curvature_method, image_block_masses
from .derivatives import has_closed_form
from .layout import BlockLayout
from .targets import TARGETS

# probe pairs per image when purity is estimated: 64 products each (see docs/performance.md)
EVAL_PROBES = 8
# entries of the (K, d, d) per-class mean |H| kept for heatmaps (128 MB); above it, none
HBAR_MAX = 2**25


def own_share(inside: Tensor, total: Tensor, empty: float = 1.0) -> Tensor:
    """inside / total elementwise, and ``empty`` where total is 0 (1: nothing lies outside the
    block; NaN: not measured)."""
    return torch.where(
        total > 0,
        inside / total.clamp_min(torch.finfo(total.dtype).tiny),
        torch.full_like(total, empty),
    )


def image_share(H: Tensor, labels: Tensor, layout: BlockLayout, empty: float = 1.0) -> Tensor:
    """(B,) each image's share of sum |H_i| inside its own block B_{y_i} x B_{y_i}, for H (B, d, d)
    and labels (B,); ``empty`` for an image without curvature (see :func:`own_share`)."""
    inside = (H.abs() * layout.own_pairs(labels)).sum((1, 2))
    return own_share(inside, H.abs().sum((1, 2)), empty)


def class_abs_sum(H: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class sum of |H_i| and sample count: ((K, d, d), (K,)); sums over batches add up."""
    onehot = F.one_hot(labels, num_classes).to(H.dtype)
    return torch.einsum("bk,bde->kde", onehot, H.abs()), onehot.sum(0)


def class_block_purity(hbar: Tensor, layout: BlockLayout) -> Tensor:
    """(K,) share of each class's mean (or summed) |H| mass, hbar (K, d, d), inside its own block
    B_c x B_c; NaN for a class with no mass. Chance, for mass spread evenly, is
    ``layout.chance()``."""
    inside = (
        hbar.abs() * layout.own_pairs(torch.arange(layout.num_classes, device=hbar.device))
    ).sum((1, 2))
    return own_share(inside, hbar.abs().sum((1, 2)), float("nan"))


@dataclass
class Purity:
    """Block purity of a set of images, both views.

    per_class: (K,) class-mean purity, NaN for a class absent from the images.
    per_image: (N,) own-block share of each image; labels: (N,) their classes.
    hbar: (K, d, d) per-class mean |H| (for heatmaps), or None where K d^2 is above :data:`HBAR_MAX`
    (1000 classes of 2 dims would need 16 GB); purity never needs it.
    method: how H was computed; samples: N.
    per_image_mass: (N,) each image's total curvature mass, from the same H as the shares (sum
    |H_i|, or the probe estimate of its squared Frobenius mass); a class mean is the mass-weighted
    mean of its images' shares, so the images of largest mass decide it. None where it was not
    recorded.
    block_shares: (N, K) each image's share of its |H_i| inside every class block B_k x B_k (its own
    block's is ``per_image``), for concept purity; None where probes estimated only the own block.
    """

    per_class: Tensor
    per_image: Tensor
    labels: Tensor
    hbar: Tensor | None
    method: str
    per_image_mass: Tensor | None = None
    block_shares: Tensor | None = None

    @property
    def mean(self) -> float:
        """Mean over the classes present of the class-mean purity."""
        return float(torch.nanmean(self.per_class))

    def standard_error(self) -> float:
        """Standard error of :attr:`mean` from measuring it on these images only: each class's
        purity is a ratio of summed masses, sum a_i / sum b_i (a_i = share_i x mass_i), whose
        variance over images is, by the delta method, n / (n - 1) sum (a_i - R b_i)^2 / (sum b_i)^2;
        classes are independent. NaN without per-image masses or where a measured class has fewer
        than 2 images."""
        if self.per_image_mass is None:
            return float("nan")
        variance, classes = 0.0, 0
        for c in range(len(self.per_class)):
            keep = (self.labels == c) & ~self.per_image.isnan()
            mass = self.per_image_mass[keep].double()
            if float(mass.sum()) <= 0:
                continue
            n, ratio = len(mass), float(self.per_class[c])
            if n < 2:
                return float("nan")
            residual = self.per_image[keep].double() * mass - ratio * mass
            variance += n / (n - 1) * float(residual.pow(2).sum()) / float(mass.sum()) ** 2
            classes += 1
        return variance**0.5 / classes if classes else float("nan")

    def image_view(self) -> dict[str, list[float]]:
        """Per class: mean and median of the per-image purity, and the share of images at or above
        0.5."""
        out = {"mean": [], "median": [], "share_at_least_half": []}
        for c in range(len(self.per_class)):
            p = self.per_image[(self.labels == c) & ~self.per_image.isnan()]
            empty = len(p) == 0
            out["mean"].append(float("nan") if empty else float(p.mean()))
            out["median"].append(float("nan") if empty else float(p.median()))
            out["share_at_least_half"].append(
                float("nan") if empty else float((p >= 0.5).float().mean())
            )
        return out

    def image_overall(self) -> dict[str, float]:
        """Over every measured image of every class: mean and median per-image purity, and the share
        at or above 0.5 (NaN without images)."""
        p = self.per_image[~self.per_image.isnan()]
        if len(p) == 0:
            return {
                "mean": float("nan"),
                "median": float("nan"),
                "share_at_least_half": float("nan"),
            }
        return {
            "mean": float(p.mean()),
            "median": float(p.median()),
            "share_at_least_half": float((p >= 0.5).float().mean()),
        }

    def mass_share(self) -> Tensor:
        """(N,) each image's share of its class's total curvature mass (NaN without
        ``per_image_mass``, or for a class with no mass)."""
        if self.per_image_mass is None:
            return torch.full(self.labels.shape, float("nan"))
        mass = self.per_image_mass.nan_to_num(0.0)
        totals = torch.zeros(len(self.per_class)).index_add_(0, self.labels, mass)
        return own_share(mass, totals[self.labels], float("nan"))

    def top_mass(self, c: int, k: int = 8) -> Tensor:
        """Indices (into the measured images) of class ``c``'s at most ``k`` images of largest mass,
        largest first: the images that decide the class mean."""
        idx = (self.labels == c).nonzero().flatten()
        if self.per_image_mass is None or len(idx) == 0:
            return idx[:0]
        order = self.per_image_mass[idx].nan_to_num(0.0).argsort(descending=True, stable=True)
        return idx[order[:k]]

    def mass_holders(self, c: int, fraction: float = 0.9) -> int | None:
        """The fewest images of class ``c`` that together hold ``fraction`` of its curvature mass
        (None without ``per_image_mass`` or without mass)."""
        if self.per_image_mass is None:
            return None
        mass = self.per_image_mass[self.labels == c].nan_to_num(0.0).sort(descending=True).values
        total = float(mass.sum())
        if total <= 0:
            return None
        reached = (mass.cumsum(0) >= fraction * total * (1 - 1e-6)).nonzero()
        return int(reached[0]) + 1 if len(reached) else len(mass)

    def summary(self) -> dict:
        """The JSON-able numbers a run's summary.json and metrics rows keep."""
        view, overall = self.image_view(), self.image_overall()
        return {
            "block_purity": self.mean,
            "block_purity_per_class": self.per_class.tolist(),
            "image_purity_mean": overall["mean"],
            "image_purity_median": overall["median"],
            "image_purity_at_least_half": overall["share_at_least_half"],
            "image_purity_mean_per_class": view["mean"],
            "image_purity_median_per_class": view["median"],
            "image_purity_at_least_half_per_class": view["share_at_least_half"],
            "block_purity_standard_error": self.standard_error(),
            "purity_method": self.method,
            "purity_samples": len(self.labels),
        }


def measure_purity(
    model,
    batches: Iterable[tuple[Tensor, Tensor]],
    layout: BlockLayout,
    wrt: str = "classifier",
    recon_loss: str = "mse",
    hessian_method: str = "auto",
    max_samples: int | None = None,
    probes: int = EVAL_PROBES,
    seed: int = 0,
) -> Purity:
    """Block purity of ``model`` on the (images, labels) ``batches`` (at most ``max_samples``
    images), for the loss ``wrt`` names. ``auto`` measures exact |H| for both views at any latent
    width, the one definition of docs/method.md (the closed form where the head has one;
    :meth:`Purity.standard_error` is the error of measuring it on these images only). Where a probe
    method is asked for, both views use the squared Frobenius masses estimated with ``probes`` pairs
    per image, seeded, and ``Purity.method`` says it is an estimate. The model's mode is left as it
    is."""
    device = next(model.parameters()).device
    K, d = layout.num_classes, layout.latent_dim
    generator = torch.Generator().manual_seed(seed)
    keep_hbar = K * d * d <= HBAR_MAX
    hsum, counts = (
        torch.zeros(K, d, d, device=device) if keep_hbar else None,
        torch.zeros(K, device=device),
    )
    inside_sum, total_sum = torch.zeros(K, device=device), torch.zeros(K, device=device)
    per_image, mass, labels, blocks, method = [], [], [], [], hessian_method
    for x, y in _first(batches, max_samples):
        x, y = x.to(device), y.to(device)
        method, inside, total, share, H, block_share = _batch_masses(
            model, x, y, layout, wrt, recon_loss, hessian_method, keep_hbar, probes, generator
        )
        if block_share is not None:
            blocks.append(block_share)
        onehot = F.one_hot(y, K).to(total.dtype)
        inside_sum, total_sum, counts = (
            inside_sum + onehot.T @ inside,
            total_sum + onehot.T @ total,
            counts + onehot.sum(0),
        )
        if H is not None:
            hsum = hsum + class_abs_sum(H, y, K)[0]
        per_image.append(share.cpu())
        mass.append(total.cpu())
        labels.append(y.cpu())
    hbar = None if hsum is None else (hsum / counts.clamp_min(1).view(-1, 1, 1)).cpu()
    per_class, label = _class_purity(inside_sum, total_sum, counts, method, hessian_method, probes)
    shares = torch.cat(blocks) if blocks and len(blocks) == len(labels) else None
    return Purity(
        per_class.cpu(),
        torch.cat(per_image),
        torch.cat(labels),
        hbar,
        label,
        torch.cat(mass),
        shares,
    )


def _first(
    batches: Iterable[tuple[Tensor, Tensor]], max_samples: int | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """The (images, labels) ``batches`` up to their first ``max_samples`` images (None: all), the
    last one cut to fit."""
    seen = 0
    for x, y in batches:
        if max_samples is not None:
            if seen >= max_samples:
                break
            x, y = x[: max_samples - seen], y[: max_samples - seen]
        yield x, y
        seen += len(y)


def _batch_masses(
    model,
    x: Tensor,
    y: Tensor,
    layout: BlockLayout,
    wrt: str,
    recon_loss: str,
    hessian_method: str,
    keep_hbar: bool,
    probes: int,
    generator: torch.Generator,
) -> tuple[str, Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """The curvature of one batch, images x (B, ...) and labels y (B,), for the loss ``wrt`` names:
    the method used; each image's mass inside its own block (B,), in all (B,) and their ratio (B,);
    its |H| (B, d, d) where kept (see :func:`image_block_masses`); and its share in every class
    block (B, K) where known."""
    with torch.no_grad():
        z = model.encode(x).float()
    head, target, loss = TARGETS.get(wrt).loss_hessian(model, recon_loss, x, y)
    # measuring needs no penalty gradient, so "auto" is exact |H| at any width, never an estimate
    method = (
        hessian_method
        if hessian_method == "auto"
        else curvature_method(
            hessian_method, loss, layout.latent_dim, None, has_closed_form(head, loss)
        )[0]
    )
    masses, total, H = image_block_masses(
        head, z, target, y, layout, loss, method, keep_hbar, probes, generator
    )
    inside = masses if masses.ndim == 1 else masses.gather(1, y[:, None])[:, 0]
    block_shares = (
        own_share(masses, total[:, None], float("nan")).cpu() if masses.ndim == 2 else None
    )
    own = own_share(inside, total, float("nan"))
    own = own.clamp(0, 1) if CURVATURE_METHODS.get(method).probes else own
    return method, inside, total, own, H, block_shares


def _class_purity(
    inside: Tensor, total: Tensor, counts: Tensor, method: str, hessian_method: str, probes: int
) -> tuple[Tensor, str]:
    """(K,) class-mean purity from each class's summed own-block and total masses (K,), NaN for a
    class without images (``counts`` (K,)), and how the masses were measured."""
    per_class = torch.where(counts > 0, own_share(inside, total, float("nan")), torch.nan)
    if CURVATURE_METHODS.get(method).probes:
        label = f"{method} estimate of squared Frobenius masses, {probes} probe pairs per image"
        return per_class.clamp(0, 1), label
    return per_class, f"exact |H| ({hessian_method})"
