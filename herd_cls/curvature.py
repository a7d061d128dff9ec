"""How latent curvature is computed: one :class:`CurvatureMethod` per ``--hessian-method`` in
``CURVATURE_METHODS`` (exact per-sample Hessians, closed forms, Gauss-Newton, and unbiased
block-mass estimates from probes, one of them forward-only; the computations are in
:mod:`herd_cls.derivatives`), and the calls that pick one by name, down to each image's curvature
mass in the class blocks (:func:`image_block_masses`, what purity reads).
:mod:`herd_cls.regularizers` turns the results into penalties (HeRD's in ``herd.py`` and
``herd_forms.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .derivatives import (
    as_input,
    check_per_sample,
    exact_hessian,
    forward_block_mass,
    forward_gauss_newton,
    has_closed_form,
    hessian_block_mass,
    linear_ce_hessian,
)
from .block_curvature import block_head_block_masses, on_blocks
from .layout import BlockLayout
from .losses import Loss, per_sample_loss
from .registry import HerdError, Registry

# "auto": exact CE Hessians up to this latent size, the forward estimate above it
AUTO_EXACT_MAX_DIM = 64
# entries of the (d, B, d) Hessian products of one exact chunk of images: 64 MB in float32
EXACT_CHUNK = 2**24


# public API: Hessians


def latent_hessian(
    head: Callable, z: Tensor, target, loss: Loss = "ce", method: str = "auto"
) -> Tensor:
    """Per-sample Hessian of ``loss(head(z_i), target_i)`` with respect to ``z_i``.

    Args:
        head: z -> output (an ``nn.Module`` or any callable acting sample-wise).
        z: latent batch, shape (B, d). If it requires grad, the result is differentiable w.r.t.
            the encoder that made it; it is always differentiable w.r.t. the head's parameters.
        target: class labels (B,) for ``ce``; images shaped like the output for ``mse``/``bce``.
        loss: ``"ce"``, ``"mse"``, ``"bce"`` (per-sample mean over elements) or a callable
            ``(output, target) -> (B,)``.
        method: ``"exact"`` (d batched Hessian-vector products), ``"closed_form"`` (a linear head
            with cross-entropy, or a head with ``logit_derivatives`` such as the block head, at any
            width), ``"gauss_newton"`` (J^T M J from d + 1 forward passes, no double backward:
            :func:`forward_gauss_newton`) or ``"auto"`` (closed form where it applies, exact
            otherwise).

    Returns:
        Tensor of shape (B, d, d).
    """
    if z.dim() != 2:
        raise HerdError(f"z must have shape (batch, latent_dim), got {tuple(z.shape)}")
    entry = _method(method, probes=False)
    check_per_sample(head)
    return entry.hessian(head, z, target, loss)


def _closed_form_any(head: Callable, z: Tensor, target, loss: Loss) -> Tensor:
    if not has_closed_form(head, loss):
        raise HerdError(
            "method 'closed_form' needs an nn.Linear head with loss 'ce' or a block head; use "
            "method 'exact'"
        )
    if isinstance(head, nn.Linear):
        return linear_ce_hessian(head, z)
    return head.closed_form_hessian(as_input(z), target, per_sample_loss(loss))


def _auto_hessian(head: Callable, z: Tensor, target, loss: Loss) -> Tensor:
    if has_closed_form(head, loss):
        return _closed_form_any(head, z, target, loss)
    return exact_hessian(head, z, target, per_sample_loss(loss))


def block_mass(
    head: Callable,
    z: Tensor,
    target,
    region: Tensor,
    loss: Loss = "ce",
    method: str = "forward",
    probes: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-sample (inside, total) squared Frobenius masses of the latent curvature, each (B,), by a
    probe method: ``forward`` (:func:`forward_block_mass`, Gauss-Newton, no double backward) or
    ``hvp`` (:func:`hessian_block_mass`, the exact Hessian, 2k Hessian-vector products)."""
    return _method(method, probes=True).block_mass(head, z, target, region, loss, probes, generator)


def sum_losses(
    heads: Sequence[Callable], losses: Sequence[str]
) -> tuple[Callable, tuple[str, ...]]:
    """One head and loss whose Hessian is the sum of the given ones (for ``wrt="both"``).

    The combined head maps z to a tuple of outputs; the combined target is a matching tuple, and the
    loss is the tuple of names (every curvature method here accepts it).
    """

    def head(z: Tensor):
        return tuple(h(z) for h in heads)

    return head, tuple(losses)


def curvature_method(
    method: str, loss: Loss, latent_dim: int, probes: int | None, closed_form: bool = False
) -> tuple[str, int | None]:
    """The training path "auto" stands for, with its probe count (docs/performance.md): the closed
    form where the head has one (``closed_form``: :func:`has_closed_form`; exact at any width),
    exact Hessians for the classifier's CE at d <= AUTO_EXACT_MAX_DIM, otherwise the forward-only
    Gauss-Newton estimate (no double backward). ``probes`` given with "auto" on CE means HVP
    probes."""
    entry = CURVATURE_METHODS.get(method)
    if entry.probes:
        return method, probes or entry.default_probes
    if method != "auto":
        return method, None
    if loss == "ce" and probes is not None:
        return "hvp", probes
    if closed_form or (loss == "ce" and latent_dim <= AUTO_EXACT_MAX_DIM):
        return "auto", None
    return "forward", probes or CURVATURE_METHODS.get("forward").default_probes


@dataclass(frozen=True)
class CurvatureMethod:
    """One ``--hessian-method``: per-sample Hessians, ``hessian(head, z, target, loss) -> (B, d,
    d)``, or probe estimates of squared block masses, ``block_mass(head, z, target, region, loss,
    probes, generator) -> (inside, total)``, each (B,), with ``default_probes``; a probe method
    names in ``whole`` the Hessian method that computes the whole matrix the same way, for penalties
    that read every entry; ``forward_only``: it needs forward passes alone (no autograd unless a
    gradient is wanted)."""

    name: str
    help: str
    hessian: Callable[..., Tensor] | None = None
    block_mass: Callable[..., tuple[Tensor, Tensor]] | None = None
    default_probes: int | None = None
    whole: str | None = None
    forward_only: bool = False

    @property
    def probes(self) -> bool:
        """It estimates block masses from random probes (and so serves only purity penalties)."""
        return self.block_mass is not None


CURVATURE_METHODS: Registry[CurvatureMethod] = Registry("curvature method")
CURVATURE_METHODS.add(
    CurvatureMethod(
        "auto",
        "the block head's closed form at any latent size, exact for another classifier head at "
        "latent size <= 64, forward for decoder losses and wider mlp heads",
        _auto_hessian,
    )
)
CURVATURE_METHODS.add(
    CurvatureMethod(
        "exact",
        "exact Hessians from d batched Hessian-vector products",
        lambda head, z, target, loss: exact_hessian(head, z, target, per_sample_loss(loss)),
    )
)
CURVATURE_METHODS.add(
    CurvatureMethod(
        "closed_form",
        "exact Hessians in closed form: a linear head with cross-entropy, or the block head at any "
        "width",
        _closed_form_any,
    )
)
CURVATURE_METHODS.add(
    CurvatureMethod(
        "gauss_newton",
        "J^T M J from d + 1 forward passes, no double backward",
        lambda head, z, target, loss: forward_gauss_newton(head, z, loss),
        forward_only=True,
    )
)
CURVATURE_METHODS.add(
    CurvatureMethod(
        "hvp",
        "probe estimates of block masses from Hessian-vector products",
        block_mass=hessian_block_mass,
        default_probes=2,
        whole="auto",
    )
)
CURVATURE_METHODS.add(
    CurvatureMethod(
        "forward",
        "probe estimates of block masses from extra forward passes (Gauss-Newton, no double "
        "backward)",
        block_mass=lambda head, z, target, region, loss, probes, generator: forward_block_mass(
            head, z, region, loss, probes, generator
        ),
        default_probes=1,
        whole="gauss_newton",
        forward_only=True,
    )
)


def method_names(probes: bool) -> list[str]:
    """The registered probe methods (``probes``) or Hessian methods, in registration order."""
    return [
        name
        for name in CURVATURE_METHODS.names(sort=False)
        if CURVATURE_METHODS.get(name).probes == probes
    ]


def _method(name: str, probes: bool) -> CurvatureMethod:
    """The probe method (``probes``) or Hessian method ``name``; any other name is one clear
    error."""
    if name not in method_names(probes):
        raise HerdError(
            f"unknown {'probe' if probes else 'Hessian'} method {name!r}; choose one of: "
            f"{', '.join(method_names(probes))}"
        )
    return CURVATURE_METHODS.get(name)


def image_block_masses(
    head,
    z: Tensor,
    target,
    y: Tensor,
    layout: BlockLayout,
    loss,
    method: str,
    keep_hessians: bool,
    probes: int,
    generator,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Each of the B images' curvature mass inside its own block (B,), or inside every class block
    (B, K) where H is known exactly; its total mass (B,); and its |H| (B, d, d) where it was formed
    and ``keep_hessians``. By ``method``: probe estimates of squared masses (own block only), a
    block head's closed-form |H| masses under "auto" (no H formed), or |H| formed in chunks."""
    if CURVATURE_METHODS.get(method).probes:
        with torch.no_grad() if CURVATURE_METHODS.get(method).forward_only else torch.enable_grad():
            inside, total = block_mass(
                head, z, target, layout.own(y), loss, method, probes, generator
            )
        return inside.detach().float(), total.detach().float(), None
    # O(K m^2) per image (block_curvature)
    if not keep_hessians and method == "auto" and on_blocks(head, layout):
        with torch.enable_grad():
            blocks, total = block_head_block_masses(head, z, target, loss)
        return blocks.detach().float(), total.detach().float(), None
    H = _chunked_hessians(head, z, target, loss, method).abs()
    n, k = layout.dims_per_class, layout.num_classes
    # (B, K)
    blocks = H[:, : k * n, : k * n].reshape(len(H), k, n, k, n).diagonal(0, 1, 3).sum((1, 2))
    return blocks, H.sum((1, 2)), H if keep_hessians else None


def _chunked_hessians(head, z: Tensor, target, loss, method: str) -> Tensor:
    """Per-image H (B, d, d), computed in chunks of images small enough for wide latents."""
    step = max(1, EXACT_CHUNK // z.shape[1] ** 2)
    rows = lambda t, i: (
        tuple(u[i : i + step] for u in t) if isinstance(t, tuple) else t[i : i + step]
    )
    return torch.cat(
        [
            latent_hessian(head, z[i : i + step], rows(target, i), loss, method).detach().float()
            for i in range(0, len(z), step)
        ]
    )
