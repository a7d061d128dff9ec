"""How latent curvature is computed: exact per-sample Hessians, closed forms, Gauss-Newton, and
unbiased block-mass estimates from probes, one of them forward-only.

Everything here is a pure function of a head (any callable z -> output), a latent batch z (B, d) and a
target; :mod:`herd_cls.regularizers.herd_penalty` turns the results into penalties.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import HerdError

LossFn = Callable[[Tensor, Tensor], Tensor]
"""(head output, target) -> per-sample loss, shape (B,)."""
Loss = Union[str, LossFn]

LOSSES = ("ce", "mse", "bce")
HESSIAN_METHODS = ("auto", "exact", "closed_form", "gauss_newton")
PROBE_METHODS = ("hvp", "forward")
METHODS = (*HESSIAN_METHODS, *PROBE_METHODS)
AUTO_EXACT_MAX_DIM = 64         # "auto": exact CE Hessians up to this latent size, the forward estimate above it
DEFAULT_PROBES = {"forward": 1, "hvp": 2}  # forward: 4 extra forward passes; see docs/performance.md


# helpers

def per_sample_loss(loss: Loss) -> LossFn:
    """The per-sample loss: cross-entropy, or MSE/BCE averaged over the sample's elements; a tuple of
    names is the sum of those losses over a tuple of (outputs, targets), as :func:`sum_losses` makes."""
    if isinstance(loss, (tuple, list)):
        fns = [per_sample_loss(part) for part in loss]
        return lambda outs, targets: sum(fn(o, t) for fn, o, t in zip(fns, outs, targets))
    if callable(loss):
        return loss
    if loss == "ce":
        return margin_cross_entropy
    if loss == "mse":
        return lambda out, x: (out - x).pow(2).flatten(1).mean(1)
    if loss == "bce":
        return lambda out, x: F.binary_cross_entropy(out, x, reduction="none").flatten(1).mean(1)
    raise HerdError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)} or pass a callable")


def margin_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy (B,) of logits (B, K), written as softplus(m) with the soft margin
    m = logsumexp_{k != y} f_k - f_y, so that its derivatives stay accurate for confident samples.

    ``F.cross_entropy`` differentiates to p_y - 1, which float32 rounds to 0 once p_y rounds to 1 (a
    margin of about 17): the own class's terms of the Hessian vanish while the other classes' terms,
    of order p_k, survive, and a confident sample's curvature reads as lying wholly outside its block.
    Here the derivatives are sigmoid(m) and sigmoid(m)(1 - sigmoid(m)) times those of m: no 1 - p_y.
    """
    own = F.one_hot(labels, logits.shape[1]).bool()
    margin = torch.logsumexp(logits.masked_fill(own, float("-inf")), dim=1) - logits.gather(1, labels[:, None])[:, 0]
    return F.softplus(margin)


def _check_per_sample(head: Callable) -> None:
    """Batch statistics couple the samples, so a per-sample Hessian would be silently wrong."""
    if not isinstance(head, nn.Module):
        return
    for m in head.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats):
            raise HerdError(
                f"the head contains {type(m).__name__} using batch statistics, which couples samples and "
                "makes per-sample Hessians wrong; put the head in eval mode or use LayerNorm/GroupNorm"
            )


def as_input(z: Tensor) -> Tensor:
    """z as a node of the graph: kept when it already requires grad (so the encoder trains)."""
    return z if z.requires_grad else z.detach().requires_grad_(True)


def _latent_grad(head: Callable, z: Tensor, target, loss_fn: LossFn) -> Tensor:
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
    (res,) = torch.autograd.grad(out, z, grad_outputs=vectors, is_grads_batched=True,
                                 create_graph=True, allow_unused=True)
    return torch.zeros(vectors.shape[0], *z.shape, dtype=z.dtype, device=z.device) if res is None else res


def _basis(z: Tensor) -> Tensor:
    """(d, B, d): the j-th slice is e_j for every sample."""
    b, d = z.shape
    return torch.eye(d, dtype=z.dtype, device=z.device).unsqueeze(1).expand(d, b, d)


def _exact(head: Callable, z: Tensor, target, loss_fn: LossFn) -> Tensor:
    z = as_input(z)
    g = _latent_grad(head, z, target, loss_fn)
    return batched_vjp(g, z, _basis(z)).transpose(0, 1)


def _closed_form(head: nn.Linear, z: Tensor) -> Tensor:
    """Softmax cross-entropy through a linear head: H_i = W^T (diag(p_i) - p_i p_i^T) W."""
    p = torch.softmax(head(z), dim=-1)
    curvature = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    w = head.weight
    return torch.einsum("kd,bkl,le->bde", w, curvature, w)


def has_closed_form(head: Callable, loss: Loss) -> bool:
    """Whether ``latent_hessian`` computes this head's curvature in closed form: a linear head with
    cross-entropy, or any loss on a head that gives its own, ``head.closed_form_hessian(z, target, loss_fn)``
    (the block head: :mod:`herd_cls.block_curvature`)."""
    return (isinstance(head, nn.Linear) and loss == "ce") or hasattr(head, "closed_form_hessian")


# public API: Hessians

def latent_hessian(head: Callable, z: Tensor, target, loss: Loss = "ce", method: str = "auto") -> Tensor:
    """Per-sample Hessian of ``loss(head(z_i), target_i)`` with respect to ``z_i``.

    Args:
        head: z -> output (an ``nn.Module`` or any callable acting sample-wise).
        z: latent batch, shape (B, d). If it requires grad, the result is differentiable w.r.t.
            the encoder that made it; it is always differentiable w.r.t. the head's parameters.
        target: class labels (B,) for ``ce``; images shaped like the output for ``mse``/``bce``.
        loss: ``"ce"``, ``"mse"``, ``"bce"`` (per-sample mean over elements) or a callable
            ``(output, target) -> (B,)``.
        method: ``"exact"`` (d batched Hessian-vector products), ``"closed_form"`` (a linear head
            with cross-entropy, or a head with ``logit_derivatives`` such as the block head, at any width),
            ``"gauss_newton"`` (J^T M J from d + 1 forward passes, no double backward:
            :func:`forward_gauss_newton`) or ``"auto"`` (closed form where it applies, exact otherwise).

    Returns:
        Tensor of shape (B, d, d).
    """
    if z.dim() != 2:
        raise HerdError(f"z must have shape (batch, latent_dim), got {tuple(z.shape)}")
    if method not in HESSIAN_METHODS:
        raise HerdError(f"unknown Hessian method {method!r}; choose one of: {', '.join(HESSIAN_METHODS)}")
    _check_per_sample(head)
    closed = has_closed_form(head, loss)
    if method == "auto":
        method = "closed_form" if closed else "exact"
    if method == "closed_form":
        if not closed:
            raise HerdError("method 'closed_form' needs an nn.Linear head with loss 'ce' or a block head; use "
                            "method 'exact'")
        if isinstance(head, nn.Linear):
            return _closed_form(head, z)
        return head.closed_form_hessian(as_input(z), target, per_sample_loss(loss))
    if method == "gauss_newton":
        return forward_gauss_newton(head, z, target, loss)
    return _exact(head, z, target, per_sample_loss(loss))


def _rademacher(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    signs = torch.randint(0, 2, shape, generator=generator, device="cpu")
    return (2.0 * signs - 1.0).to(device=like.device, dtype=like.dtype)


def _output_form(out: Tensor, target, loss: str) -> Callable[[Tensor, Tensor], Tensor]:
    """(a, b) -> a^T M b per sample, for output-space directions a, b (..., B, *out.shape[1:]), with M the
    curvature of the per-sample loss in output space (Gauss-Newton's middle factor)."""
    n = out[0].numel()
    dims = tuple(range(-(out.dim() - 1), 0))   # a sample's elements, whatever leading dims a and b have
    if loss == "ce":
        p = torch.softmax(out, -1)
        return lambda a, b: (p * a * b).sum(-1) - (p * a).sum(-1) * (p * b).sum(-1)
    if loss == "mse":
        return lambda a, b: (2.0 / n) * (a * b).sum(dims)
    if loss == "bce":  # the decoder ends in a sigmoid: M is p(1 - p) / n on the logits, so divide J_p by p(1 - p)
        var = (out * (1 - out)).clamp_min(1e-4)
        return lambda a, b: (a * b / (n * var)).sum(dims)
    raise _no_closed_form(loss)


def _no_closed_form(loss) -> HerdError:
    return HerdError(f"the forward method knows the losses {', '.join(LOSSES)} and their tuples; "
                     "for a custom loss callable use method 'hvp' or 'exact'")


def _finite_jvps(head: Callable, z: Tensor, directions: Tensor, eps: float):
    """(outputs, J-products): the head's outputs at z (a tuple) and, for each, J u for the directions
    u (P, B, d), shaped (P, B, *out.shape[1:]), from one batched forward pass at z + eps u. Both
    terms keep z in the graph, so the gradient w.r.t. z is the difference of the Jacobians, as it should."""
    count, b, d = directions.shape
    outs = head(z)
    moved = head((z.unsqueeze(0) + eps * directions).reshape(-1, d))
    outs, moved = (outs, moved) if isinstance(outs, tuple) else ((outs,), (moved,))
    return outs, [(m.view(count, *o.shape) - o.unsqueeze(0)) / eps for o, m in zip(outs, moved)]


def forward_jacobian(head: Callable, z: Tensor, eps: float = 1e-3, scale: Tensor | None = None):
    """(outputs, Jacobians): the head's outputs at z (a tuple) and, for each, its columns J e_j for every
    latent dim j, shaped (d, B, *out.shape[1:]), from one-sided finite differences (one batched forward
    pass at z + eps e_j). With ``scale`` (d,), the columns are J (scale_j e_j): z measured in those units."""
    directions = _basis(z) if scale is None else _basis(z) * scale
    return _finite_jvps(head, z, directions, eps)


def forward_block_mass(head: Callable, z: Tensor, target, region: Tensor, loss: Loss = "ce", probes: int = 1,
                       generator: torch.Generator | None = None, eps: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Unbiased estimates of ``||G_i[R_i, R_i]||_F^2`` and ``||G_i||_F^2`` for the Gauss-Newton matrix
    G_i = J_i^T M_i J_i of each sample, with no second-order autograd at all.

    For independent Rademacher v, w: E[(v^T G w)^2] = ||G||_F^2, and v, w restricted to R_i give the
    block's mass. J v comes from a one-sided finite difference of the head's output (one extra forward
    pass per direction, all batched into one call), M from the loss in closed form (softmax for CE, 2/N
    for MSE, p(1-p)/N on the logits for BCE). Each probe draws v and w and splits them into their parts
    inside and outside R_i (J v = J v_in + J v_out), so a probe costs 4 directions; all k v's are paired
    with all k w's (a U-statistic of k^2 products). G drops the residual term of the exact Hessian: exact
    for a ReLU decoder with a linear output, an approximation for nonlinear heads (docs/method.md).

    Args:
        region: boolean (B, d), the dims R_i of each sample's block. probes: k. eps: the finite
            differences' step, in units of z.
    Returns:
        (inside, total), each of shape (B,).
    """
    if probes < 1:
        raise HerdError(f"probes must be at least 1, got {probes}")
    _check_per_sample(head)
    keep = region.to(z.dtype)
    v, w = _rademacher((2, probes, *z.shape), z, generator)
    directions = torch.cat([v * keep, v * (1 - keep), w * keep, w * (1 - keep)])       # (4k, B, d)
    outs, jvs = _finite_jvps(head, z, directions, eps)
    losses = tuple(loss) if isinstance(loss, (tuple, list)) else (loss,)
    targets = tuple(target) if isinstance(loss, (tuple, list)) else (target,)
    inside = total = 0.0
    for out, ju, t, name in zip(outs, jvs, targets, losses):
        form = _output_form(out, t, name)
        v_in, v_out, w_in, w_out = ju.split(probes)
        pair = lambda a, b: form(a.unsqueeze(1), b.unsqueeze(0))    # noqa: E731  (k, k, B)
        inside = inside + pair(v_in, w_in)
        total = total + pair(v_in + v_out, w_in + w_out)
    return inside.pow(2).mean((0, 1)), total.pow(2).mean((0, 1))


def _output_gram(out: Tensor, target, loss: str, jac: Tensor) -> Tensor:
    """(B, d, d) J^T M J per sample for the output-space Jacobian columns ``jac`` (d, B, *out.shape[1:])
    and the loss curvature M in output space (as in :func:`_output_form`), without a (d, d, B, N) product."""
    d, b = jac.shape[:2]
    if loss == "ce":
        p = torch.softmax(out, -1)
        jp = (jac * p).sum(-1)                                                  # (d, B)
        return torch.einsum("ibk,jbk->bij", jac * p, jac) - torch.einsum("ib,jb->bij", jp, jp)
    n = out[0].numel()
    if loss == "mse":
        weight = torch.full_like(out, 2.0 / n)
    elif loss == "bce":
        weight = 1.0 / (n * (out * (1 - out)).clamp_min(1e-4))
    else:
        raise _no_closed_form(loss)
    flat = jac.reshape(d, b, -1)
    return torch.einsum("ibn,jbn->bij", flat * weight.reshape(1, b, -1), flat)


def forward_gauss_newton(head: Callable, z: Tensor, target, loss: Loss = "ce", eps: float = 1e-3) -> Tensor:
    """The Gauss-Newton matrix G_i = J_i^T M_i J_i of each sample, (B, d, d), with no double backward.

    J's d columns come from one-sided finite differences of the head's output (d extra forward passes,
    batched into one call), M from the loss in closed form (as :func:`forward_block_mass`). G equals the
    Hessian where the head is piecewise linear up to the loss's own link (a ReLU decoder with a sigmoid
    and BCE, or a linear output and MSE); elsewhere it drops the residual term. Tuples of heads' outputs
    and losses add their matrices. Differentiable w.r.t. z and the head's parameters.
    """
    _check_per_sample(head)
    outs, jacs = forward_jacobian(head, z, eps)
    losses = tuple(loss) if isinstance(loss, (tuple, list)) else (loss,)
    targets = tuple(target) if isinstance(loss, (tuple, list)) else (target,)
    return sum(_output_gram(out, t, name, jac) for out, jac, t, name in zip(outs, jacs, targets, losses))


def block_mass(head: Callable, z: Tensor, target, region: Tensor, loss: Loss = "ce", method: str = "forward",
               probes: int = 1, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Per-sample (inside, total) squared Frobenius masses of the latent curvature, each (B,):
    ``forward`` (:func:`forward_block_mass`, Gauss-Newton, no double backward) or ``hvp``
    (:func:`hessian_block_mass`, the exact Hessian, 2k Hessian-vector products)."""
    if method == "forward":
        return forward_block_mass(head, z, target, region, loss, probes, generator)
    if method == "hvp":
        return hessian_block_mass(head, z, target, region, loss, probes, generator)
    raise HerdError(f"unknown probe method {method!r}; choose one of: {', '.join(PROBE_METHODS)}")


def hessian_block_mass(head: Callable, z: Tensor, target, region: Tensor, loss: Loss = "ce",
                       probes: int = 2, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
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
    _check_per_sample(head)
    z = as_input(z)
    g = _latent_grad(head, z, target, per_sample_loss(loss))
    v = _rademacher((2 * probes, *z.shape), z, generator)
    keep = region.to(z.dtype)
    v[probes:] *= keep
    hv = batched_vjp(g, z, v)
    total = hv[:probes].pow(2).sum(-1).mean(0)
    inside = (hv[probes:] * keep).pow(2).sum(-1).mean(0)
    return inside, total


def sum_losses(heads: Sequence[Callable], losses: Sequence[str]) -> tuple[Callable, tuple[str, ...]]:
    """One head and loss whose Hessian is the sum of the given ones (for ``wrt="both"``).

    The combined head maps z to a tuple of outputs; the combined target is a matching tuple, and the
    loss is the tuple of names (every curvature method here accepts it).
    """
    def head(z: Tensor):
        return tuple(h(z) for h in heads)

    return head, tuple(losses)


def curvature_method(method: str, loss: Loss, latent_dim: int, probes: int | None,
                     closed_form: bool = False) -> tuple[str, int | None]:
    """The training path "auto" stands for, with its probe count (docs/performance.md): the closed form
    where the head has one (``closed_form``: :func:`has_closed_form`; exact at any width), exact Hessians for
    the classifier's CE at d <= AUTO_EXACT_MAX_DIM, otherwise the forward-only Gauss-Newton estimate (no
    double backward). ``probes`` given with "auto" on CE means HVP probes."""
    if method in PROBE_METHODS:
        return method, probes or DEFAULT_PROBES[method]
    if method != "auto":
        return method, None
    if loss == "ce" and probes is not None:
        return "hvp", probes
    if closed_form or (loss == "ce" and latent_dim <= AUTO_EXACT_MAX_DIM):
        return "auto", None
    return "forward", probes or DEFAULT_PROBES["forward"]

