"""Exact latent curvature of a block head (:class:`herd_cls.heads.BlockHead`) in closed form, at any
width.

Logit k reads only its own dims I_k = ``head.index[k]`` (its class block, then the shared dims), so
the per-image Hessian of a loss of the logits is H = J^T S J + sum_k (dL/df_k) d^2 f_k / dz^2, with
J's row k and d^2 f_k / dz^2 living on I_k and given by the head (``logit_derivatives``), and S and
dL/df from autograd on the K logits alone. docs/method.md derives it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .derivatives import as_input, batched_vjp
from .losses import Loss, LossFn, per_sample_loss


def logit_terms(
    head: nn.Module, z: Tensor, target, loss_fn: LossFn
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For a head with ``logit_derivatives``: each logit's gradient (B, K, m) and Hessian (B, K, m,
    m) on its own dims ``head.index`` (K, m), dL/df (B, K), and S (B, K, K), the Hessian of the loss
    in the logits, from autograd on the logits alone (K products, not d)."""
    logits, grad, hess = head.logit_derivatives(z)
    k = logits.shape[1]
    (dl,) = torch.autograd.grad(loss_fn(logits, target).sum(), logits, create_graph=True)
    eye = torch.eye(k, dtype=z.dtype, device=z.device).unsqueeze(1).expand(k, len(z), k)
    return grad, hess, dl, batched_vjp(dl, logits, eye).transpose(0, 1)


def block_closed_form(head: nn.Module, z: Tensor, target, loss_fn: LossFn) -> Tensor:
    """H_i = J_i^T S_i J_i + sum_k (dL_i/df_k) H_ik, with J_i's row k and H_ik living on logit k's
    own dims (:func:`logit_terms`; :class:`herd_cls.heads.BlockHead`), scattered into (B, d, d)."""
    grad, hess, dl, s = logit_terms(head, z, target, loss_fn)
    (b, d), (k, m) = z.shape, head.index.shape
    jac = torch.zeros(b, k, d, dtype=z.dtype, device=z.device).scatter_add(
        2, head.index.expand(b, k, m), grad
    )
    rows = head.index[:, :, None].expand(k, m, m)
    cells = (rows * d + rows.transpose(1, 2)).reshape(-1)  # (K m m,)
    residual = torch.zeros(b, d * d, dtype=z.dtype, device=z.device).index_add(
        1, cells, (dl[:, :, None, None] * hess).reshape(b, -1)
    )
    return jac.transpose(1, 2) @ s @ jac + residual.view(b, d, d)


def on_blocks(head, layout) -> bool:
    """Whether ``head`` is a block head on ``layout``'s blocks (a
    :class:`~herd_cls.layout.BlockLayout`): its |H| masses then have the closed form of
    :func:`block_head_masses`."""
    if (
        not hasattr(head, "logit_derivatives")
        or getattr(head, "shared_dims", None) != layout.shared_dims
    ):
        return False
    return torch.equal(head.index.cpu(), layout.head_index())


def block_head_masses(
    head: nn.Module, z: Tensor, target, labels: Tensor, loss: Loss = "ce"
) -> tuple[Tensor, Tensor]:
    """Exact per-sample (inside, total) |H| masses, each (B,), inside each sample's own block
    B_{y_i} x B_{y_i} (``labels``) and in all, of a block head (see
    :func:`block_head_block_masses`)."""
    blocks, total = block_head_block_masses(head, z, target, loss)
    return blocks.gather(1, labels[:, None])[:, 0], total


def block_head_block_masses(
    head: nn.Module, z: Tensor, target, loss: Loss = "ce"
) -> tuple[Tensor, Tensor]:
    """Exact per-sample |H| masses inside every class block B_k x B_k, (B, K), and in all, (B,), of
    a block head whose ``index`` rows are class k's n own dims followed by the s shared dims
    (:class:`herd_cls.heads.BlockHead`),
    without forming H: O(K m^2) per sample instead of O(d^2), so a 2048-wide latent costs what a
        20-wide one does.

    Off the own blocks, H_i on class k's x class l's own dims (k != l) is S_ikl g_ik g_il^T, whose
    |.| sums to |S_ikl| |g_ik|_1 |g_il|_1; the own blocks, the own-x-shared and the shared-x-shared
    parts are formed.
    """
    z = as_input(z)
    grad, hess, dl, s = logit_terms(head, z, target, per_sample_loss(loss))
    n = head.index.shape[1] - head.shared_dims
    g_own, g_shared = grad[..., :n], grad[..., n:]  # (B, K, n), (B, K, s)
    l1 = g_own.abs().sum(-1)  # (B, K)
    other = 1 - torch.eye(s.shape[1], dtype=z.dtype, device=z.device)  # pairs k != l
    cross = (s.abs() * other * l1[:, :, None] * l1[:, None, :]).sum((1, 2))
    own = (
        (
            s.diagonal(0, 1, 2)[..., None, None] * g_own[..., :, None] * g_own[..., None, :]
            + dl[..., None, None] * hess[..., :n, :n]
        )
        .abs()
        .sum((-1, -2))
    )  # (B, K)
    own_shared = (
        g_own[..., :, None] * (s @ g_shared)[..., None, :] + dl[..., None, None] * hess[..., :n, n:]
    )
    shared = torch.einsum("bki,bkl,blj->bij", g_shared, s, g_shared) + torch.einsum(
        "bk,bkij->bij", dl, hess[..., n:, n:]
    )
    total = cross + own.sum(1) + 2 * own_shared.abs().sum((1, 2, 3)) + shared.abs().sum((1, 2))
    return own, total
