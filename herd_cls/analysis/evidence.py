"""What the metrics of one run read: the test split, its purity and attributions, gathered once, and
the costlier views some metrics share (each block's decoded image change, the decoder's curvature,
the factor scores), computed on first use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from torch import Tensor

from ..layout import BlockLayout
from ..models import LatentModel
from ..purity import Purity
from .decoder import FACTOR_SAMPLES, DecoderCurvature, decoder_curvature
from .sweep import decoded_block_effect

IMAGE_SWEEP_SAMPLES = 2000  # test images whose decoded sweeps measure image sweep specificity


@dataclass
class Evidence:
    """What the metrics of one run read. x (N, C, H, W), z (N, d), y (N,), logits (N, K) are the
    test split; latent_attribution (N, d) the attribution of each image's true-class logit to each
    latent dim."""

    model: LatentModel
    layout: BlockLayout
    x: Tensor
    z: Tensor
    y: Tensor
    logits: Tensor
    purity: Purity
    latent_attribution: Tensor | None  # None where it was not computed
    config: dict | None = None  # the run's config (as a dict), for Metric.by_construction
    # {name: (N,) array}: the test images' generative factors, where the data has them
    factors: dict | None = None

    @property
    def std(self) -> Tensor:
        return self.z.std(0)

    @cached_property
    def image_block_effect(self) -> Tensor | None:
        """(K, K) :func:`decoded_block_effect` on the first IMAGE_SWEEP_SAMPLES images: row c, how
        much sweeping each block changes class c's decoded images; None without a decoder."""
        if self.model.decode is None:
            return None
        n = IMAGE_SWEEP_SAMPLES
        return decoded_block_effect(self.model, self.z[:n], self.y[:n], self.layout, self.std)

    @cached_property
    def decoder_curvature(self) -> DecoderCurvature | None:
        """The mean exact |H| of the reconstruction loss w.r.t. z on the first test images; None
        without a decoder."""
        if self.model.decode is None:
            return None
        recon_loss = (self.config or {}).get("recon_loss", "mse")
        return decoder_curvature(self.model, self.x, self.z, recon_loss)

    @cached_property
    def factor_scores(self) -> dict[str, float] | None:
        """MIG, DCI (disentanglement, completeness, informativeness) and SAP of the first
        FACTOR_SAMPLES test latents against every factor all of them have, plus the class
        (:mod:`herd_cls.disentanglement`); None without factors."""
        import numpy as np

        from .. import disentanglement as dis

        n = FACTOR_SAMPLES
        found = {k: np.asarray(v[:n], dtype=np.float64) for k, v in (self.factors or {}).items()}
        found = {k: v for k, v in found.items() if not np.isnan(v).any()}
        if not found:
            return None
        z, factors = self.z[:n].double().numpy(), {**found, "class": self.y[:n].double().numpy()}
        return dis.factor_scores(z, factors)
