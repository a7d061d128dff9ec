"""Per-sample derivatives of a head's loss with respect to its latent input: exact Hessians by
autograd and in closed form, forward-only Gauss-Newton matrices and Jacobians by finite differences,
and unbiased probe estimates of block masses. :mod:`herd_cls.curvature` names them as curvature
methods.

Everything here is a pure function of a head (any callable z -> output), a latent batch z (B, d) and
a target.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .losses import Loss, LossFn, output_loss, per_sample_loss
from .registry import HerdError


def coupling_norm(head: Callable, in_eval_too: bool = False) -> nn.Module | None:
    """The first BatchNorm of ``head`` that uses batch statistics (any BatchNorm with
    ``in_eval_too``: a head about to train), or None. Batch statistics couple the samples: no
        per-sample Hessian exists."""
    if not isinstance(head, nn.Module):
        return None
    return next(
        (
            m
            for m in head.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and (in_eval_too or m.training or not m.track_running_stats)
        ),
        None,
    )


def check_per_sample(head: Callable) -> None:
    norm = coupling_norm(head)
    if norm is not None:
        raise HerdError(
            f"the head contains {type(norm).__name__} using batch statistics, which couples "
            "samples and makes per-sample Hessians wrong; put the head in eval mode or use "
            "LayerNorm/GroupNorm"
        )


def as_input(z: Tensor) -> Tensor:
    """z as a node of the graph: kept when it already requires grad (so the encoder trains)."""
    return z if z.requires_grad else z.detach().requires_grad_(True)


def latent_grad(head: Callable, z: Tensor, target, loss_fn: LossFn) -> Tensor:
    """d(sum_i L_i)/dz, shape (B, d); row i is the gradient of sample i's own loss."""
    total = loss_fn(head(z), target).sum()
    (g,) = torch.autograd.grad(total, z, create_graph=True)
    return g


def batched_vjp(out: Tensor, z: Tensor, vectors: Tensor) -> Tensor:
    """(out, z, V of shape (P, *out.shape)) -> (P, *z.shape): the P products V_p^T d out / dz.

    Samples are independent, so the Jacobian of ``out`` w.r.t. ``z`` is block-diagonal over the
    batch and one batched product gives the rows of all B per-sample matrices at once.
    """
    if not out.requires_grad:  # out does not depend on z at all
        return torch.zeros(vectors.shape[0], *z.shape, dtype=z.dtype, device=z.device)
    (res,) = torch.autograd.grad(
        out, z, grad_outputs=vectors, is_grads_batched=True, create_graph=True, allow_unused=True
    )
    return (
        torch.zeros(vectors.shape[0], *z.shape, dtype=z.dtype, device=z.device)
        if res is None
        else res
    )


def basis(z: Tensor) -> Tensor:
    """(d, B, d): the j-th slice is e_j for every sample."""
    b, d = z.shape
    return torch.eye(d, dtype=z.dtype, device=z.device).unsqueeze(1).expand(d, b, d)


def exact_hessian(head: Callable, z: Tensor, target, loss_fn: LossFn) -> Tensor:
    z = as_input(z)
    g = latent_grad(head, z, target, loss_fn)
    return batched_vjp(g, z, basis(z)).transpose(0, 1)


def linear_ce_hessian(head: nn.Linear, z: Tensor) -> Tensor:
    """Softmax cross-entropy through a linear head: H_i = W^T (diag(p_i) - p_i p_i^T) W."""
    p = torch.softmax(head(z), dim=-1)
    curvature = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    w = head.weight
    return torch.einsum("kd,bkl,le->bde", w, curvature, w)


def has_closed_form(head: Callable, loss: Loss) -> bool:
    """Whether ``latent_hessian`` computes this head's curvature in closed form: a linear head with
    cross-entropy, or any loss on a head that gives its own, ``head.closed_form_hessian(z, target,
    loss_fn)`` (the block head: :mod:`herd_cls.block_curvature`)."""
    return (isinstance(head, nn.Linear) and loss == "ce") or hasattr(head, "closed_form_hessian")


def rademacher(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    signs = torch.randint(0, 2, shape, generator=generator, device="cpu")
    return (2.0 * signs - 1.0).to(device=like.device, dtype=like.dtype)


def _finite_jvps(head: Callable, z: Tensor, directions: Tensor, eps: float):
    """(outputs, J-products): the head's outputs at z (a tuple) and, for each, J u for the
    directions u (P, B, d), shaped (P, B, *out.shape[1:]), from one batched forward pass at z + eps
    u. Both terms keep z in the graph, so the gradient w.r.t. z is the difference of the Jacobians,
    as it should."""
    count, b, d = directions.shape
    outs = head(z)
    moved = head((z.unsqueeze(0) + eps * directions).reshape(-1, d))
    outs, moved = (outs, moved) if isinstance(outs, tuple) else ((outs,), (moved,))
    return outs, [(m.view(count, *o.shape) - o.unsqueeze(0)) / eps for o, m in zip(outs, moved)]


def forward_jacobian(head: Callable, z: Tensor, eps: float = 1e-3, scale: Tensor | None = None):
    """(outputs, Jacobians): the head's outputs at z (a tuple) and, for each, its columns J e_j for
    every latent dim j, shaped (d, B, *out.shape[1:]), from one-sided finite differences (one
    batched forward pass at z + eps e_j). With ``scale`` (d,), the columns are J (scale_j e_j): z
    measured in those units."""
    directions = basis(z) if scale is None else basis(z) * scale
    return _finite_jvps(head, z, directions, eps)


def forward_block_mass(
    head: Callable,
    z: Tensor,
    region: Tensor,
    loss: Loss = "ce",
    probes: int = 1,
    generator: torch.Generator | None = None,
    eps: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """Unbiased estimates of ``||G_i[R_i, R_i]||_F^2`` and ``||G_i||_F^2`` for the Gauss-Newton
    matrix G_i = J_i^T M_i J_i of each sample, with no second-order autograd at all.

    For independent Rademacher v, w: E[(v^T G w)^2] = ||G||_F^2, and v, w restricted to R_i give the
    block's mass. J v comes from a one-sided finite difference of the head's output (one extra
    forward pass per direction, all batched into one call), M from the loss in closed form (softmax
    for CE, 2/N for MSE, p(1-p)/N on the logits for BCE; no target needed). Each probe draws v and w
    and splits them into their parts inside and outside R_i (J v = J v_in + J v_out), so a probe
    costs 4 directions; all k v's are paired with all k w's (a U-statistic of k^2 products). G drops
    the residual term of the exact Hessian: exact for a ReLU decoder with a linear output, an
    approximation for nonlinear heads (docs/method.md).

    Args:
        region: boolean (B, d), the dims R_i of each sample's block. probes: k. eps: the finite
            differences' step, in units of z.
    Returns:
        (inside, total), each of shape (B,).
    """
    if probes < 1:
        raise HerdError(f"probes must be at least 1, got {probes}")
    check_per_sample(head)
    keep = region.to(z.dtype)
    v, w = rademacher((2, probes, *z.shape), z, generator)
    directions = torch.cat([v * keep, v * (1 - keep), w * keep, w * (1 - keep)])  # (4k, B, d)
    outs, jvs = _finite_jvps(head, z, directions, eps)
    losses = tuple(loss) if isinstance(loss, (tuple, list)) else (loss,)
    inside = total = 0.0
    for out, ju, name in zip(outs, jvs, losses):
        form = output_loss(name).form(out)
        v_in, v_out, w_in, w_out = ju.split(probes)
        pair = lambda a, b: form(a.unsqueeze(1), b.unsqueeze(0))  # (k, k, B)
        inside = inside + pair(v_in, w_in)
        total = total + pair(v_in + v_out, w_in + w_out)
    return inside.pow(2).mean((0, 1)), total.pow(2).mean((0, 1))


def forward_gauss_newton(head: Callable, z: Tensor, loss: Loss = "ce", eps: float = 1e-3) -> Tensor:
    """The Gauss-Newton matrix G_i = J_i^T M_i J_i of each sample, (B, d, d), with no double
    backward.

    J's d columns come from one-sided finite differences of the head's output (d extra forward
    passes, batched into one call), M from the loss in closed form (as :func:`forward_block_mass`).
    G equals the Hessian where the head is piecewise linear up to the loss's own link (a ReLU
    decoder with a sigmoid and BCE, or a linear output and MSE); elsewhere it drops the residual
    term. M depends on the outputs alone, so no target is taken. Tuples of heads' outputs and losses
    add their matrices. Differentiable w.r.t. z and the head's parameters.
    """
    check_per_sample(head)
    outs, jacs = forward_jacobian(head, z, eps)
    losses = tuple(loss) if isinstance(loss, (tuple, list)) else (loss,)
    return sum(output_loss(name).gram(out, jac) for out, jac, name in zip(outs, jacs, losses))


def hessian_block_mass(
    head: Callable,
    z: Tensor,
    target,
    region: Tensor,
    loss: Loss = "ce",
    probes: int = 2,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Unbiased estimates of ``||H_i[R_i, R_i]||_F^2`` and ``||H_i||_F^2`` with Rademacher probes.

    With v Rademacher, E||H v||^2 = ||H||_F^2; restricting v to R_i and reading (H v) on R_i gives
    the mass of the square block R_i x R_i. The cost is 2 * ``probes`` Hessian-vector products
    whatever d is, so it serves the 512-2048 dimensional pre-logit features of timm models.

    Args:
        region: boolean (B, d), the dims R_i of each sample's block.
    Returns:
        (inside, total), each of shape (B,).
    """
    if probes < 1:
        raise HerdError(f"probes must be at least 1, got {probes}")
    check_per_sample(head)
    z = as_input(z)
    g = latent_grad(head, z, target, per_sample_loss(loss))
    v = rademacher((2 * probes, *z.shape), z, generator)
    keep = region.to(z.dtype)
    v[probes:] *= keep
    hv = batched_vjp(g, z, v)
    total = hv[:probes].pow(2).sum(-1).mean(0)
    inside = (hv[probes:] * keep).pow(2).sum(-1).mean(0)
    return inside, total
