"""The decoder's own curvature: Hessians of its activations with respect to z, in the normalised
form.

For a decoder g and a set of its activations a(z) (the image it draws, or its hidden layers), unit u
has the Hessian H_u = d^2 a_u / dz^2, with z measured in units of each dim's batch std s (H_u -> S
H_u S, S = diag(s)), so that rescaling a latent dim changes nothing. Per image and layer:

    off-diagonal share = sum_u sum_{j != k} H_ujk^2 / sum_u ||H_u||_F^2   (universal HeRD: it)
    own-block share    = sum_u ||H_u[B_y, B_y]||_F^2 / sum_u ||H_u||_F^2   (class HeRD: 1 - it)

and an image's share is the mean over the chosen layers. Unlike the Hessian of a loss (about 2 J^T J
at a good reconstruction, blind to how the decoder mixes dims), this curvature is zero exactly when
every unit is a sum of functions of one dim each (the share form of the Hessian Penalty of Peebles
et al. 2020, normalised as in Tripod, Hsu et al. 2024).

Two ways to compute it: ``exact`` (forward-over-forward autodiff, d^2 products per image: small
decoders, tests) and ``forward`` (second central differences along random directions, 4 probes of 2
forward passes each: what training uses). For a direction v, D(v) = (a(z + eps S v) - 2 a(z) + a(z -
eps S v)) / eps^2 is v^T H v up to O(eps^2); over Rademacher v its variance is 2 sum_{j != k}
H_jk^2, over Gaussian v 2 ||H||_F^2, and over Gaussian v restricted to a block B, 2 ||H_BB||_F^2. On
a ReLU decoder the hidden layers are piecewise linear (exact Hessians vanish almost everywhere) and
``eps`` sets the scale at which their kinks count as curvature.

>>> shares = curvature_shares(model.decode, z, scale=z.std(0))          # (B,) off-diagonal shares
>>> penalty = shares.mean()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .registry import HerdError, Registry

ACTIVATIONS = (nn.ReLU, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Softplus)
DEFAULT_PROBES = 2  # per kind of direction, as in Tripod
DEFAULT_EPS = 0.1  # finite-difference step in units of each dim's batch std, as in Tripod


@dataclass(frozen=True)
class DecoderLayers:
    """One ``--decoder-layers``: whether the hidden activations (every activation module's output)
    and the output (the image) count."""

    name: str
    help: str
    hidden: bool
    output: bool


LAYERS: Registry[DecoderLayers] = Registry("decoder layers")
LAYERS.add(DecoderLayers("output", "the decoded image", hidden=False, output=True))
LAYERS.add(DecoderLayers("hidden", "the decoder's hidden activations", hidden=True, output=False))
LAYERS.add(DecoderLayers("all", "both", hidden=True, output=True))


def activations(decoder: Callable, z: Tensor, layers: str = "output") -> list[Tensor]:
    """The activations ``layers`` names, each flattened to (B, units): the output, and/or the output
    of every activation module inside ``decoder`` (in call order)."""
    kind = LAYERS.get(layers)
    hidden: list[Tensor] = []
    hooks = []
    if kind.hidden:
        modules = decoder.modules() if isinstance(decoder, nn.Module) else ()
        hooks = [
            m.register_forward_hook(lambda _m, _i, out: hidden.append(out.flatten(1)))
            for m in modules
            if isinstance(m, ACTIVATIONS)
        ]
    try:
        out = decoder(z).flatten(1)
    finally:
        for h in hooks:
            h.remove()
    if kind.hidden and not hidden:
        raise HerdError(
            "--decoder-layers hidden needs activation modules (nn.ReLU, nn.GELU, ...) in the "
            "decoder"
        )
    return [*(hidden if kind.hidden else []), *([out] if kind.output else [])]


def exact_hessians(
    decoder: Callable, z: Tensor, layers: str = "output", scale: Tensor | None = None
) -> list[Tensor]:
    """Per layer, (B, units, d, d): every unit's Hessian w.r.t. its own image's z (in units of
    ``scale``, (d,)), by forward-over-forward autodiff. Costs d^2 products per image: for small
    decoders and tests."""
    from torch.func import jacfwd, vmap

    s = torch.ones(z.shape[1], dtype=z.dtype, device=z.device) if scale is None else scale

    def one(u: Tensor) -> tuple[Tensor, ...]:
        return tuple(a[0] for a in activations(decoder, (u * s).unsqueeze(0), layers))

    return list(vmap(jacfwd(jacfwd(one)))(z / s))


def exact_masses(H: Tensor, own: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(part, total), each (B,), of Hessians H (B, units, d, d): summed squared entries off the
    diagonal (or, with ``own`` (B, d) bool, inside each image's own block) and in all."""
    sq = H.pow(2)
    total = sq.sum((1, 2, 3))
    if own is None:
        return total - torch.diagonal(sq, dim1=2, dim2=3).sum((1, 2)), total
    pairs = (own.unsqueeze(2) & own.unsqueeze(1)).to(sq.dtype)
    return (sq * pairs.unsqueeze(1)).sum((1, 2, 3)), total


def _second_differences(
    decoder: Callable, z: Tensor, directions: Tensor, layers: str, eps: float
) -> list[Tensor]:
    """Per layer, (P, B, units): D(v) for the directions v (P, B, d) (already in z's units), from
    one batched forward pass at z and z +- eps v."""
    count, b, d = directions.shape
    moved = torch.cat([z.unsqueeze(0), z + eps * directions, z - eps * directions]).reshape(-1, d)
    out = []
    for a in activations(decoder, moved, layers):
        a = a.view(2 * count + 1, b, -1)
        out.append((a[1 : count + 1] - 2 * a[:1] + a[count + 1 :]) / eps**2)
    return out


def _variance(d: Tensor) -> Tensor:
    """(B,) the mean over units of the variance over the probes (dim 0, unbiased) of D (P, B,
    units)."""
    return d.var(0).mean(-1)


def forward_masses(
    decoder: Callable,
    z: Tensor,
    layers: str = "output",
    scale: Tensor | None = None,
    own: Tensor | None = None,
    probes: int = DEFAULT_PROBES,
    eps: float = DEFAULT_EPS,
    generator: torch.Generator | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """Per layer, (part, total) as in :func:`exact_masses` but estimated (each x 2 / units) from
    ``probes`` second differences per kind of direction: Rademacher (off-diagonal) or own-block
    Gaussian, and Gaussian."""
    if probes < 2:
        raise HerdError(f"the forward estimate needs at least 2 probes per direction, got {probes}")
    b, d = z.shape
    s = torch.ones(d, dtype=z.dtype, device=z.device) if scale is None else scale
    gauss = torch.randn(probes, b, d, generator=generator, device="cpu").to(z)
    if own is None:
        part = (
            2.0 * torch.randint(0, 2, (probes, b, d), generator=generator, device="cpu") - 1
        ).to(z)
    else:
        # the same draws on the own block only: a lower-variance ratio
        part = gauss * own.to(z.dtype)
    diffs = _second_differences(decoder, z, torch.cat([part, gauss]) * s, layers, eps)
    return [(_variance(x[:probes]), _variance(x[probes:])) for x in diffs]


def _exact_layer_masses(decoder, z, layers, scale, own, probes, eps, generator):
    return [exact_masses(H, own) for H in exact_hessians(decoder, z, layers, scale)]


@dataclass(frozen=True)
class DecoderMethod:
    """One way to compute the decoder's curvature: ``masses(decoder, z, layers, scale, own, probes,
    eps, generator)`` -> per layer (part, total), each (B,), as :func:`exact_masses` gives them."""

    name: str
    help: str
    masses: Callable[..., list[tuple[Tensor, Tensor]]]


METHODS: Registry[DecoderMethod] = Registry("decoder curvature method")
METHODS.add(
    DecoderMethod(
        "exact", "forward-over-forward autodiff: small decoders, tests", _exact_layer_masses
    )
)
METHODS.add(DecoderMethod("forward", "second differences along random directions", forward_masses))


def curvature_shares(
    decoder: Callable,
    z: Tensor,
    layers: str = "output",
    scale: Tensor | None = None,
    own: Tensor | None = None,
    method: str = "forward",
    probes: int = DEFAULT_PROBES,
    eps: float = DEFAULT_EPS,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(B,) each image's share of its decoder curvature that lies off the diagonal (``own`` None) or
    inside its own block (``own`` (B, d) bool), the mean over ``layers``; z in units of ``scale``
    (d,). An image without curvature counts as share 0 off the diagonal and 1 inside its block
    (nothing to penalise)."""
    LAYERS.get(layers)
    masses = METHODS.get(method).masses(decoder, z, layers, scale, own, probes, eps, generator)
    empty = 0.0 if own is None else 1.0
    shares = [
        torch.where(
            total > 0,
            part / total.clamp_min(torch.finfo(total.dtype).tiny),
            torch.full_like(total, empty),
        ).clamp(0, 1)
        for part, total in masses
    ]
    return torch.stack(shares).mean(0)


def standard_error(shares: Tensor) -> float:
    """The standard error of ``shares.mean()`` over the images (and, for the forward estimate, its
    probes)."""
    return float(shares.std() / len(shares) ** 0.5) if len(shares) > 1 else float("nan")
