"""Latent models: an encoder x -> z and heads z -> logits (``classify``) and z -> x_hat
(``decode``).

Every model honours one contract, so the regularizer, captum and the sweeps use the same callables:
``encode(x)``, ``classify(z)``, ``decode`` (a module, or None), ``latent_dim``. Inputs are images in
[0, 1]; the normalisation lives inside the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .backbones import build_backbone
from .concept_whitening import ConceptWhitening
from .heads import make_head
from .registry import HerdError, Registry
from .layout import BlockLayout


@dataclass(frozen=True)
class LatentKind:
    """One ``--latent``: where z lives. ``size(features, latent_dim, num_classes, shared_dims) ->
    (d, shared dims)``; ``bottleneck``: a linear map of the backbone's F features makes z (else z is
    the features)."""

    name: str
    help: str
    size: Callable[[int, int | None, int, int | None], tuple[int, int]]
    bottleneck: bool


LATENTS: Registry[LatentKind] = Registry("latent")


class LatentModel(nn.Module):
    """Encoder, latent, classifier head and optional decoder around any feature extractor.

    Args:
        backbone: x -> features (B, F); a timm model built with ``num_classes=0`` or a ConvEncoder.
        latent_dim: the size of z.
        layout: the class blocks of z (:class:`~herd_cls.layout.BlockLayout`), or None where z does
            not split into class blocks (a plain model; every herd-cls run has one).
        bottleneck: a linear map F -> latent_dim; False uses the features themselves as z
            (``pre-logits``).
        classify: the head z -> logits.
        decode: the head z -> image, or None.
        mean, std: per-channel normalisation applied to inputs in [0, 1].
        variational: add a log-variance layer beside the bottleneck (which then gives the mean), for
            the VAE baselines; ``encode`` still returns the mean.
        whitened: z is Concept Whitening's output
            (:class:`~herd_cls.concept_whitening.ConceptWhitening` on the layout's blocks, in
            ``whitening``), for the ``concept-whitening`` baseline.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        latent_dim: int,
        layout: BlockLayout | None,
        bottleneck: bool,
        classify: nn.Module,
        decode: nn.Module | None,
        mean: list[float],
        std: list[float],
        variational: bool = False,
        whitened: bool = False,
    ):
        super().__init__()
        if variational and not bottleneck:
            raise HerdError("a variational latent needs a bottleneck; use latent 'bottleneck'")
        if whitened and (variational or layout is None):
            raise HerdError("concept whitening needs a deterministic latent with class blocks")
        if layout is not None and layout.latent_dim != latent_dim:
            raise HerdError(f"the block layout has {layout.latent_dim} dims, z has {latent_dim}")
        self.backbone = backbone
        self.layout = layout
        self.latent_dim = latent_dim
        self.bottleneck = nn.Linear(num_features, self.latent_dim) if bottleneck else nn.Identity()
        self.logvar = nn.Linear(num_features, self.latent_dim) if variational else None
        self.whitening = (
            ConceptWhitening(layout.num_classes, layout.dims_per_class, layout.shared_dims)
            if whitened
            else None
        )
        self.classify = classify
        self.decode = decode
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def encode(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) in [0, 1] -> latent z (B, latent_dim)."""
        z = self.bottleneck(self.backbone((x - self.mean) / self.std))
        return z if self.whitening is None else self.whitening(z)

    @property
    def variational(self) -> bool:
        return self.logvar is not None

    def encode_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images -> (mean, log-variance) of q(z | x), each (B, latent_dim); variational models
        only."""
        features = self.backbone((x - self.mean) / self.std)
        return self.bottleneck(features), self.logvar(features)

    def forward(self, x: Tensor) -> Tensor:
        """Images -> logits, so the model is a plain classifier for attacks and attribution."""
        return self.classify(self.encode(x))


LATENTS.add(
    LatentKind(
        "bottleneck",
        "a linear bottleneck of --latent-dim after the backbone",
        lambda features, d, k, shared: (
            (d if d is not None else 2 * k + (shared or 0)),
            shared or 0,
        ),
        bottleneck=True,
    )
)
LATENTS.add(
    LatentKind(
        "pre-logits",
        "the backbone's own pre-logit features (the rest after equal class blocks are shared dims)",
        lambda features, d, k, shared: (features, shared if shared is not None else features % k),
        bottleneck=False,
    )
)
# public API


def create_model(
    backbone: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    image_size: int = 32,
    latent: str = "bottleneck",
    latent_dim: int | None = None,
    head: str = "block",
    head_hidden: int = 64,
    decoder: bool = False,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    variational: bool = False,
    shared_dims: int | None = None,
    whitened: bool = False,
) -> LatentModel:
    """A LatentModel around a timm backbone (any name in ``timm.list_models()``), ``"conv"`` (a
    small conv encoder) or ``"burgess"`` (the 4-conv encoder and decoder of the disentanglement
    literature).

    The defaults are those ``herd-cls train`` ships: a bottleneck of 2 dims per class, no shared
    dims, the ``block`` head. ``latent="pre-logits"`` takes the backbone's own pre-logit features as
    z and, with ``head="linear"``, its own classifier: HeRD then attaches to an unmodified timm
    classifier.
    ``shared_dims`` (default: none for a bottleneck; what is left over after equal class blocks for
    pre-logits) matters to ``head="block"``.

    >>> model = create_model("resnet18", num_classes=10, in_chans=1)   # z: 20 dims, 2 per class
    """
    kind = LATENTS.get(latent)
    mean = mean or [0.5] * in_chans
    std = std or [0.5] * in_chans
    own_classifier = not kind.bottleneck and head == "linear"
    features, num_features, classifier, decoder_class = build_backbone(
        backbone, in_chans, image_size, pretrained, pretrained_file, num_classes, own_classifier
    )
    d, shared_dims = kind.size(num_features, latent_dim, num_classes, shared_dims)
    # a model whose dims do not split into class blocks has no layout (it cannot be a herd-cls run)
    layout = (
        BlockLayout.split(num_classes, d, shared_dims)
        if head == "block" or BlockLayout.fits(num_classes, d, shared_dims)
        else None
    )
    classifier = classifier or make_head(head, d, num_classes, head_hidden, layout)
    dec = decoder_class(d, (in_chans, image_size, image_size)) if decoder else None
    parts = (features, num_features, d, layout, kind.bottleneck, classifier, dec)
    return LatentModel(*parts, mean, std, variational, whitened)
