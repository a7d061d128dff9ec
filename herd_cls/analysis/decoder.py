"""What a run with a decoder shows: every latent dim swept through it, its loss curvature, factor
scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..registry import HerdError
from ..regularizers import reg_names
from ..run import Run
from .latents import collect, evaluating
from .sweep import SPAN, STEPS, sweep

DECODER_HESSIAN_SAMPLES = 64  # test images whose exact decoder Hessians make the decoder heatmap
FACTOR_SAMPLES = 1000  # test images the factor metrics (MIG, DCI, SAP) are scored on


@dataclass
class DecoderCurvature:
    """Mean |H| (d, d) of the reconstruction loss w.r.t. z over ``samples`` test images (exact
    Hessians); its off-diagonal share is the ``decoder_off_diagonal`` metric."""

    hbar: Tensor
    samples: int

    @property
    def off_diagonal(self) -> float:
        """Share of the mean |H| off the diagonal (0: every dim's curvature is its own; chance,
        spread evenly, is 1 - 1/d); NaN where the decoder has no curvature."""
        total = float(self.hbar.sum())
        return (total - float(self.hbar.diagonal().sum())) / total if total > 0 else float("nan")


def decoder_curvature(
    model, x: Tensor, z: Tensor, recon_loss: str, samples: int = DECODER_HESSIAN_SAMPLES
) -> DecoderCurvature:
    from ..curvature import latent_hessian

    x, z = x[:samples], z[:samples]
    with evaluating(model), torch.enable_grad():
        H = latent_hessian(model.decode, z.detach(), x, recon_loss, "exact").detach().abs()
    return DecoderCurvature(H.mean(0), len(z))


@dataclass
class LatentGrid:
    """Every latent dim swept on a few images and drawn by the run's decoder: the original work's
    headline picture. images: (D, T, S, C, H, W) for D dims, T offsets and S images; change: (D,)
    the mean absolute pixel change between the sweep's two ends (a dim the decoder ignores has
    change 0); kinds: per dim, "class <c>" or "shared" ("" where no class penalty or classifier
    shaped the blocks); source: which test images were swept; factors: per dim, the generative
    factor it is most informative about and that normalised mutual information over the test set
    (:func:`herd_cls.disentanglement.dim_factors`), or None for a data set without recorded
    factors."""

    images: Tensor
    offsets: Tensor
    dims: list[int]
    kinds: list[str]
    change: Tensor
    source: str
    factors: list[tuple[str, float]] | None = None


def latent_grid(
    run: Run,
    target: int | None = None,
    samples: int = 3,
    span: float = SPAN,
    steps: int = STEPS,
    test: dict | None = None,
) -> LatentGrid:
    """Sweep every latent dim of ``samples`` test images (of class ``target``, or spread over the
    whole test set) through the run's own decoder. ``test``: ``collect(run.model,
    run.data("test"))``, if at hand."""
    if run.decode is None:
        raise HerdError(
            "this run has no decoder, so no latent grid; train with --decoder, or use --class for "
            "the post-hoc decoder's sweeps of one class"
        )
    test = test if test is not None else collect(run.model, run.data("test"))
    z, y = test["z"], test["y"]
    if target is not None and not (y == target).any():
        raise HerdError(f"the test split has no image of class {target}; pick another class")
    pool = (y == target).nonzero().flatten() if target is not None else torch.arange(len(y))
    chosen = pool[torch.linspace(0, len(pool) - 1, min(samples, len(pool))).round().long()]
    layout, dims = run.layout, list(range(run.layout.latent_dim))
    result = sweep(run.model, z[chosen], dims, z.std(0), span, steps)
    change = (result["images"][:, -1] - result["images"][:, 0]).abs().flatten(1).mean(1)
    # the blocks mean something only where a class penalty or classifier shaped them
    owned = "universal" not in reg_names(run.config.reg) and run.config.alpha_cl > 0
    kinds = [
        ""
        if not owned
        else "shared"
        if layout.kind(d, 0) == "shared"
        else f"class {d // layout.dims_per_class}"
        for d in dims
    ]
    source = f"class {target}" if target is not None else "the whole test set"
    return LatentGrid(
        result["images"], result["offsets"], dims, kinds, change, source, _dim_factors(run, z, y)
    )


def _dim_factors(
    run: Run, z: Tensor, y: Tensor, samples: int = FACTOR_SAMPLES
) -> list[tuple[str, float]] | None:
    """Per dim, its most informative factor over the first ``samples`` test images (None without
    factors)."""
    import numpy as np

    from ..data import dataset_factors
    from ..disentanglement import dim_factors

    found = dataset_factors(run.data("test"))
    common = {k: np.asarray(v[:samples], dtype=np.float64) for k, v in found.items()}
    common = {k: v for k, v in common.items() if not np.isnan(v).any()}
    if not common:
        return None
    return dim_factors(
        z[:samples].double().numpy(), {**common, "class": y[:samples].double().numpy()}
    )
