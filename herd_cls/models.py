"""Latent models: an encoder x -> z and heads z -> logits (``classify``) and z -> x_hat (``decode``).

Every model honours one contract, so the regularizer, captum and the sweeps use the same
callables: ``encode(x)``, ``classify(z)``, ``decode`` (a module, or None), ``latent_dim``.
Inputs are images in [0, 1]; the normalisation lives inside the model.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from .concept_whitening import ConceptWhitening
from .heads import make_head
from .registry import HerdError, Registry
from .layout import BlockLayout



@dataclass(frozen=True)
class LatentKind:
    """One ``--latent``: where z lives. ``size(features, latent_dim, num_classes, shared_dims) -> (d, shared
    dims)``; ``bottleneck``: a linear map of the backbone's F features makes z (else z is the features)."""

    name: str
    help: str
    size: Callable[[int, int | None, int, int | None], tuple[int, int]]
    bottleneck: bool


@dataclass(frozen=True)
class LocalBackbone:
    """A timm-free ``--backbone`` (no pretrained weights): ``encoder(in_chans, image_size)`` with a
    ``num_features`` attribute, and the ``decoder`` class ``(latent_dim, (C, H, W))`` that ``--decoder`` adds."""

    name: str
    help: str
    encoder: Callable[[int, int], nn.Module]
    decoder: Callable[[int, tuple[int, int, int]], nn.Module]


LATENTS: Registry[LatentKind] = Registry("latent")
LOCAL_BACKBONES: Registry[LocalBackbone] = Registry("local backbone")


class ConvDecoder(nn.Module):
    """z (B, d) -> image (B, C, H, W) in [0, 1]: a linear map to a small grid, then upsampling."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, int, int], width: int = 64):
        super().__init__()
        c, h, w = out_shape
        ups = max(0, math.ceil(math.log2(max(h, w) / 4)))
        self.grid = (math.ceil(h / 2 ** ups), math.ceil(w / 2 ** ups))
        self.out_size = (h, w)
        self.width = width
        self.fc = nn.Sequential(nn.Linear(latent_dim, width * self.grid[0] * self.grid[1]), nn.GELU())
        layers, ch = [], width
        for _ in range(ups):
            nxt = max(16, ch // 2)
            layers += [nn.ConvTranspose2d(ch, nxt, 4, stride=2, padding=1), nn.GELU()]
            ch = nxt
        layers += [nn.Conv2d(ch, c, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        x = self.fc(z).view(len(z), self.width, *self.grid)
        x = self.net(x)
        if tuple(x.shape[-2:]) != self.out_size:
            x = nn.functional.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


class ConvEncoder(nn.Module):
    """A plain strided-conv encoder, x (B, C, H, W) -> features (B, num_features); no timm needed."""

    def __init__(self, in_chans: int, width: int = 32, num_features: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, width, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, num_features), nn.GELU(),
        )
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BurgessEncoder(nn.Module):
    """The 4-conv encoder of Burgess et al. 2018 and disentanglement_lib: four 4x4 stride-2 convs (32, 32,
    64, 64 channels) and two dense layers of 256, ReLU; x (B, C, H, W) -> features (B, 256). The latent
    layer (mean, and log-variance for a VAE) is the model's bottleneck on top."""

    def __init__(self, in_chans: int, image_size: int, num_features: int = 256):
        super().__init__()
        channels = [in_chans, 32, 32, 64, 64]
        convs = [m for a, b in zip(channels, channels[1:]) for m in (nn.Conv2d(a, b, 4, stride=2, padding=1), nn.ReLU())]
        side = image_size
        for _ in range(4):
            side = (side - 2) // 2 + 1   # a 4x4 stride-2 conv with padding 1
        self.net = nn.Sequential(*convs, nn.Flatten(), nn.Linear(64 * side * side, num_features), nn.ReLU(),
                                 nn.Linear(num_features, num_features), nn.ReLU())
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BurgessDecoder(nn.Module):
    """The mirror of :class:`BurgessEncoder`: z (B, d) -> dense 256, 256, 64 x (S/16)^2 -> four 4x4 stride-2
    transposed convs -> image (B, C, S, S) in [0, 1] (a sigmoid on the last layer's logits)."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, int, int], width: int = 256):
        super().__init__()
        c, h, w = out_shape
        self.side, self.out_size = math.ceil(max(h, w) / 16), (h, w)
        channels = [64, 64, 32, 32]
        ups = [m for a, b in zip(channels, channels[1:]) for m in (nn.ConvTranspose2d(a, b, 4, stride=2, padding=1),
                                                                  nn.ReLU())]
        self.fc = nn.Sequential(nn.Linear(latent_dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                nn.Linear(width, 64 * self.side ** 2), nn.ReLU())
        self.net = nn.Sequential(*ups, nn.ConvTranspose2d(32, c, 4, stride=2, padding=1))

    def forward(self, z: Tensor) -> Tensor:
        x = self.net(self.fc(z).view(len(z), 64, self.side, self.side))
        if tuple(x.shape[-2:]) != self.out_size:  # sizes that are not multiples of 16
            x = nn.functional.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


class LatentModel(nn.Module):
    """Encoder, latent, classifier head and optional decoder around any feature extractor.

    Args:
        backbone: x -> features (B, F); a timm model built with ``num_classes=0`` or a ConvEncoder.
        latent_dim: the size of z.
        layout: the class blocks of z (:class:`~herd_cls.layout.BlockLayout`), or None where z does not
            split into class blocks (a plain model; every herd-cls run has one).
        bottleneck: a linear map F -> latent_dim; False uses the features themselves as z (``pre-logits``).
        classify: the head z -> logits.
        decode: the head z -> image, or None.
        mean, std: per-channel normalisation applied to inputs in [0, 1].
        variational: add a log-variance layer beside the bottleneck (which then gives the mean), for
            the VAE baselines; ``encode`` still returns the mean.
        whitened: z is Concept Whitening's output (:class:`~herd_cls.concept_whitening.ConceptWhitening` on
            the layout's blocks, in ``whitening``), for the ``concept-whitening`` baseline.
    """

    def __init__(self, backbone: nn.Module, num_features: int, latent_dim: int, layout: BlockLayout | None,
                 bottleneck: bool, classify: nn.Module, decode: nn.Module | None, mean: list[float], std: list[float],
                 variational: bool = False, whitened: bool = False):
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
        self.whitening = ConceptWhitening(layout.num_classes, layout.dims_per_class, layout.shared_dims) \
            if whitened else None
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
        """Images -> (mean, log-variance) of q(z | x), each (B, latent_dim); variational models only."""
        features = self.backbone((x - self.mean) / self.std)
        return self.bottleneck(features), self.logvar(features)

    def forward(self, x: Tensor) -> Tensor:
        """Images -> logits, so the model is a plain classifier for attacks and attribution."""
        return self.classify(self.encode(x))


LATENTS.add(LatentKind("bottleneck", "a linear bottleneck of --latent-dim after the backbone",
                       lambda features, d, k, shared: ((d if d is not None else 2 * k + (shared or 0)), shared or 0),
                       bottleneck=True))
LATENTS.add(LatentKind("pre-logits", "the backbone's own pre-logit features (the rest after equal class blocks are "
                       "shared dims)", lambda features, d, k, shared: (features, shared if shared is not None
                                                                        else features % k), bottleneck=False))
LOCAL_BACKBONES.add(LocalBackbone("conv", "a small conv encoder", lambda c, size: ConvEncoder(c), ConvDecoder))
LOCAL_BACKBONES.add(LocalBackbone("burgess", "the 4-conv encoder and decoder of Burgess et al. 2018 and "
                                  "disentanglement_lib", BurgessEncoder, BurgessDecoder))


# helpers

def _timm_backbone(name: str, in_chans: int, image_size: int, pretrained: bool, pretrained_file: str | None,
                   num_classes: int) -> nn.Module:
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f"did you mean: {', '.join(close)}? " if close else ""
        raise HerdError(f"unknown backbone {name!r}; {hint}use {' or '.join(map(repr, LOCAL_BACKBONES.names()))} or any name "
                        "in timm.list_models()")
    kwargs: dict = {"in_chans": in_chans, "num_classes": num_classes}
    if pretrained_file is not None:
        if not Path(pretrained_file).is_file():
            raise HerdError(f"pretrained file {pretrained_file} does not exist; pass a local .pth/.safetensors file")
        kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained_file)}
    use_weights = pretrained or pretrained_file is not None
    try:
        try:  # transformers take the input size as an argument; CNNs reject it
            return timm.create_model(name, pretrained=use_weights, img_size=image_size, **kwargs)
        except TypeError:
            return timm.create_model(name, pretrained=use_weights, **kwargs)
    except (OSError, RuntimeError) as err:
        if pretrained_file is not None:
            raise HerdError(f"cannot load pretrained file {pretrained_file} into {name}: {err}") from None
        if pretrained:
            raise HerdError(f"cannot fetch pretrained weights for {name} ({type(err).__name__}); "
                            "without network use --pretrained-file PATH") from None
        raise


class _MeanOfHeads(nn.Module):
    """A distilled timm model's classifier (LeViT, EfficientFormerV2): the mean of its heads' logits,
    as the model's own ``forward_head`` computes it outside distillation training."""

    def __init__(self, heads: tuple[nn.Module, ...]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, z: Tensor) -> Tensor:
        return torch.stack([head(z) for head in self.heads]).mean(0)


def _timm_classifier(net: nn.Module) -> nn.Module:
    """The timm model's own map from its pre-logit features to logits (``get_classifier()``)."""
    classifier = net.get_classifier()
    return _MeanOfHeads(classifier) if isinstance(classifier, (tuple, list)) else classifier


def _pre_logits_width(net: nn.Module, name: str, in_chans: int, image_size: int) -> int:
    """Width F of the pooled pre-logit features (B, F) that ``net`` (after ``reset_classifier(0)``) returns.

    Measured with a dry forward on a zero image of the configured size rather than read from
    ``num_features``: MobileNet-style nets (conv_head, head_hidden_size) widen after the pooling.
    The same forward finds input sizes the model cannot take.
    """
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, in_chans, image_size, image_size))
    except Exception as err:  # any failure of a forward on a blank image: the model cannot take this size
        default = (getattr(net, "pretrained_cfg", None) or {}).get("input_size")
        hint = f", e.g. --image-size {default[-1]} (its default input size)" if default else ""
        reason = (str(err).strip().splitlines() or [""])[0][:160]
        raise HerdError(f"backbone {name} cannot take {image_size}x{image_size} images ({type(err).__name__}: "
                        f"{reason}); choose another --image-size{hint}") from None
    finally:
        net.train(was_training)
    if out.ndim != 2:
        raise HerdError(f"backbone {name} returns features of shape {tuple(out.shape[1:])} after reset_classifier(0), "
                        "not pooled (F,) pre-logits; choose another backbone")
    return out.shape[1]


# public API

def create_model(backbone: str, *, num_classes: int, in_chans: int = 3, image_size: int = 32,
                 latent: str = "bottleneck", latent_dim: int | None = None, head: str = "block", head_hidden: int = 64,
                 decoder: bool = False, pretrained: bool = False, pretrained_file: str | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 variational: bool = False, shared_dims: int | None = None, whitened: bool = False) -> LatentModel:
    """A LatentModel around a timm backbone (any name in ``timm.list_models()``), ``"conv"`` (a small conv
    encoder) or ``"burgess"`` (the 4-conv encoder and decoder of the disentanglement literature).

    The defaults are those ``herd-cls train`` ships: a bottleneck of 2 dims per class, no shared dims,
    the ``block`` head. ``latent="pre-logits"`` takes the backbone's own pre-logit features as z and,
    with ``head="linear"``, its own classifier: HeRD then attaches to an unmodified timm classifier.
    ``shared_dims`` (default: none for a bottleneck; what is left over after equal class blocks for
    pre-logits) matters to ``head="block"``.

    >>> model = create_model("resnet18", num_classes=10, in_chans=1)   # z: 20 dims, 2 per class
    """
    kind = LATENTS.get(latent)
    mean = mean or [0.5] * in_chans
    std = std or [0.5] * in_chans
    local = LOCAL_BACKBONES.get(backbone) if backbone in LOCAL_BACKBONES else None
    if local is not None:
        if pretrained or pretrained_file:
            raise HerdError(f"the {backbone!r} backbone has no pretrained weights; drop --pretrained/--pretrained-file")
        features = local.encoder(in_chans, image_size)
        num_features, classifier = features.num_features, None
    else:
        net = _timm_backbone(backbone, in_chans, image_size, pretrained, pretrained_file, num_classes)
        classifier = _timm_classifier(net) if not kind.bottleneck and head == "linear" else None
        net.reset_classifier(0)  # forward() now returns pooled pre-logit features
        num_features = _pre_logits_width(net, backbone, in_chans, image_size)  # not net.num_features
        features = net
    d, shared_dims = kind.size(num_features, latent_dim, num_classes, shared_dims)
    # a model whose dims do not split into class blocks has no layout (it cannot be a herd-cls run)
    layout = BlockLayout.split(num_classes, d, shared_dims) if head == "block" or BlockLayout.fits(
        num_classes, d, shared_dims) else None
    classifier = classifier or make_head(head, d, num_classes, head_hidden, layout)
    decoder_class = local.decoder if local is not None else ConvDecoder
    dec = decoder_class(d, (in_chans, image_size, image_size)) if decoder else None
    return LatentModel(features, num_features, d, layout, kind.bottleneck, classifier, dec, mean, std,
                       variational, whitened)
