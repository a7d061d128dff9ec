"""Where features come from: the timm-free encoders and their decoders (one :class:`LocalBackbone`
per name in ``LOCAL_BACKBONES``), and a timm model cut at its pre-logit features."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from .registry import HerdError, Registry


@dataclass(frozen=True)
class LocalBackbone:
    """A timm-free ``--backbone`` (no pretrained weights): ``encoder(in_chans, image_size)`` with a
    ``num_features`` attribute, and the ``decoder`` class ``(latent_dim, (C, H, W))`` that
    ``--decoder`` adds."""

    name: str
    help: str
    encoder: Callable[[int, int], nn.Module]
    decoder: Callable[[int, tuple[int, int, int]], nn.Module]


LOCAL_BACKBONES: Registry[LocalBackbone] = Registry("local backbone")


class ConvDecoder(nn.Module):
    """z (B, d) -> image (B, C, H, W) in [0, 1]: a linear map to a small grid, then upsampling."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, int, int], width: int = 64):
        super().__init__()
        c, h, w = out_shape
        ups = max(0, math.ceil(math.log2(max(h, w) / 4)))
        self.grid = (math.ceil(h / 2**ups), math.ceil(w / 2**ups))
        self.out_size = (h, w)
        self.width = width
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, width * self.grid[0] * self.grid[1]), nn.GELU()
        )
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
            x = nn.functional.interpolate(
                x, size=self.out_size, mode="bilinear", align_corners=False
            )
        return torch.sigmoid(x)


class ConvEncoder(nn.Module):
    """A plain strided-conv encoder, x (B, C, H, W) -> features (B, num_features); no timm
    needed."""

    def __init__(self, in_chans: int, width: int = 32, num_features: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, width, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, num_features),
            nn.GELU(),
        )
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BurgessEncoder(nn.Module):
    """The 4-conv encoder of Burgess et al. 2018 and disentanglement_lib: four 4x4 stride-2 convs
    (32, 32, 64, 64 channels) and two dense layers of 256, ReLU; x (B, C, H, W) -> features (B,
    256). The latent layer (mean, and log-variance for a VAE) is the model's bottleneck on top."""

    def __init__(self, in_chans: int, image_size: int, num_features: int = 256):
        super().__init__()
        channels = [in_chans, 32, 32, 64, 64]
        convs = [
            m
            for a, b in zip(channels, channels[1:])
            for m in (nn.Conv2d(a, b, 4, stride=2, padding=1), nn.ReLU())
        ]
        side = image_size
        for _ in range(4):
            side = (side - 2) // 2 + 1  # a 4x4 stride-2 conv with padding 1
        self.net = nn.Sequential(
            *convs,
            nn.Flatten(),
            nn.Linear(64 * side * side, num_features),
            nn.ReLU(),
            nn.Linear(num_features, num_features),
            nn.ReLU(),
        )
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BurgessDecoder(nn.Module):
    """The mirror of :class:`BurgessEncoder`: z (B, d) -> dense 256, 256, 64 x (S/16)^2 -> four 4x4
    stride-2 transposed convs -> image (B, C, S, S) in [0, 1] (a sigmoid on the last layer's
    logits)."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, int, int], width: int = 256):
        super().__init__()
        c, h, w = out_shape
        self.side, self.out_size = math.ceil(max(h, w) / 16), (h, w)
        channels = [64, 64, 32, 32]
        ups = [
            m
            for a, b in zip(channels, channels[1:])
            for m in (nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.ReLU())
        ]
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, 64 * self.side**2),
            nn.ReLU(),
        )
        self.net = nn.Sequential(*ups, nn.ConvTranspose2d(32, c, 4, stride=2, padding=1))

    def forward(self, z: Tensor) -> Tensor:
        x = self.net(self.fc(z).view(len(z), 64, self.side, self.side))
        if tuple(x.shape[-2:]) != self.out_size:  # sizes that are not multiples of 16
            x = nn.functional.interpolate(
                x, size=self.out_size, mode="bilinear", align_corners=False
            )
        return torch.sigmoid(x)


LOCAL_BACKBONES.add(
    LocalBackbone("conv", "a small conv encoder", lambda c, size: ConvEncoder(c), ConvDecoder)
)
LOCAL_BACKBONES.add(
    LocalBackbone(
        "burgess",
        "the 4-conv encoder and decoder of Burgess et al. 2018 and disentanglement_lib",
        BurgessEncoder,
        BurgessDecoder,
    )
)


def timm_backbone(
    name: str, image_size: int, pretrained: bool, pretrained_file: str | None, **timm_kwargs
) -> nn.Module:
    """``timm.create_model(name, **timm_kwargs)`` (in_chans, num_classes, ...) for images of
    ``image_size``, with weights from the hub (``pretrained``) or a local file; misses are one
    HerdError that names the fix."""
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f"did you mean: {', '.join(close)}? " if close else ""
        raise HerdError(
            f"unknown backbone {name!r}; {hint}use "
            f"{' or '.join(map(repr, LOCAL_BACKBONES.names()))} or any name in timm.list_models()"
        )
    kwargs = dict(timm_kwargs)
    if pretrained_file is not None:
        if not Path(pretrained_file).is_file():
            raise HerdError(
                f"pretrained file {pretrained_file} does not exist; pass a local .pth/.safetensors "
                f"file"
            )
        kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained_file)}
    use_weights = pretrained or pretrained_file is not None
    try:
        try:  # transformers take the input size as an argument; CNNs reject it
            return timm.create_model(name, pretrained=use_weights, img_size=image_size, **kwargs)
        except TypeError:
            return timm.create_model(name, pretrained=use_weights, **kwargs)
    except (OSError, RuntimeError) as err:
        if pretrained_file is not None:
            raise HerdError(
                f"cannot load pretrained file {pretrained_file} into {name}: {err}"
            ) from None
        if pretrained:
            raise HerdError(
                f"cannot fetch pretrained weights for {name} ({type(err).__name__}); without "
                "network use --pretrained-file PATH"
            ) from None
        raise


class _MeanOfHeads(nn.Module):
    """A distilled timm model's classifier (LeViT, EfficientFormerV2): the mean of its heads'
    logits, as the model's own ``forward_head`` computes it outside distillation training."""

    def __init__(self, heads: tuple[nn.Module, ...]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, z: Tensor) -> Tensor:
        return torch.stack([head(z) for head in self.heads]).mean(0)


def timm_classifier(net: nn.Module) -> nn.Module:
    """The timm model's own map from its pre-logit features to logits (``get_classifier()``)."""
    classifier = net.get_classifier()
    return _MeanOfHeads(classifier) if isinstance(classifier, (tuple, list)) else classifier


def pre_logits_width(net: nn.Module, name: str, in_chans: int, image_size: int) -> int:
    """Width F of the pooled pre-logit features (B, F) that ``net`` (after ``reset_classifier(0)``)
    returns.

    Measured with a dry forward on a zero image of the configured size rather than read from
    ``num_features``: MobileNet-style nets (conv_head, head_hidden_size) widen after the pooling.
    The same forward finds input sizes the model cannot take.
    """
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, in_chans, image_size, image_size))
    # any failure of a forward on a blank image: the model cannot take this size
    except Exception as err:
        default = (getattr(net, "pretrained_cfg", None) or {}).get("input_size")
        hint = f", e.g. --image-size {default[-1]} (its default input size)" if default else ""
        reason = (str(err).strip().splitlines() or [""])[0][:160]
        raise HerdError(
            f"backbone {name} cannot take {image_size}x{image_size} images ({type(err).__name__}: "
            f"{reason}); choose another --image-size{hint}"
        ) from None
    finally:
        net.train(was_training)
    if out.ndim != 2:
        raise HerdError(
            f"backbone {name} returns features of shape {tuple(out.shape[1:])} after "
            "reset_classifier(0), not pooled (F,) pre-logits; choose another backbone"
        )
    return out.shape[1]


def build_backbone(
    name: str,
    in_chans: int,
    image_size: int,
    pretrained: bool,
    pretrained_file: str | None,
    num_classes: int,
    own_classifier: bool = False,
):
    """(features x -> (B, F), F, the timm model's own classifier F -> logits where
    ``own_classifier`` asks for it (else None), the decoder class ``--decoder`` adds) for a local or
    timm backbone."""
    if name in LOCAL_BACKBONES:
        if pretrained or pretrained_file:
            raise HerdError(
                f"the {name!r} backbone has no pretrained weights; drop "
                "--pretrained/--pretrained-file"
            )
        local = LOCAL_BACKBONES.get(name)
        features = local.encoder(in_chans, image_size)
        return features, features.num_features, None, local.decoder
    net = timm_backbone(
        name, image_size, pretrained, pretrained_file, in_chans=in_chans, num_classes=num_classes
    )
    classifier = timm_classifier(net) if own_classifier else None
    net.reset_classifier(0)  # forward() now returns pooled pre-logit features
    return (
        net,
        pre_logits_width(net, name, in_chans, image_size),  # not net.num_features
        classifier,
        ConvDecoder,
    )
