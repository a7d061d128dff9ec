"""HeRD, the Hessian regularizer for disentanglement, as pure tensor functions plus a thin module.

The mathematics is fixed in ``shared/notes/METHOD.md``: for every sample i, ``H_i`` is the
Hessian of the sample's loss with respect to its own latent vector ``z_i``; class-specific
HeRD penalises the mass of the per-class mean ``|H_i|`` that lies outside the class's block.

>>> herd = HeRD(num_classes=10, latent_dim=22, shared_dims=2, variant="block")
>>> penalty = herd(model.classify, z, y, labels=y, loss="ce")      # scalar, differentiable
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
METHODS = ("auto", "exact", "closed_form", "gauss_newton")
VARIANTS = ("reference", "block", "purity", "log-purity")
PURITY_VARIANTS = ("purity", "log-purity")
LOG_PURITY_DELTA = 0.01  # log-purity penalises -log((P + delta) / (1 + delta)): finite at P = 0, 0 at P = 1
MODES = ("class", "universal")


# helpers

def per_sample_loss(loss: Loss) -> LossFn:
    """The per-sample loss: cross-entropy, or MSE/BCE averaged over the sample's elements."""
    if callable(loss):
        return loss
    if loss == "ce":
        return lambda out, y: F.cross_entropy(out, y, reduction="none")
    if loss == "mse":
        return lambda out, x: (out - x).pow(2).flatten(1).mean(1)
    if loss == "bce":
        return lambda out, x: F.binary_cross_entropy(out, x, reduction="none").flatten(1).mean(1)
    raise HerdError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)} or pass a callable")


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


def _as_input(z: Tensor) -> Tensor:
    """z as a node of the graph: kept when it already requires grad (so the encoder trains)."""
    return z if z.requires_grad else z.detach().requires_grad_(True)


def _latent_grad(head: Callable, z: Tensor, target, loss_fn: LossFn) -> Tensor:
    """d(sum_i L_i)/dz, shape (B, d); row i is the gradient of sample i's own loss."""
    total = loss_fn(head(z), target).sum()
    (g,) = torch.autograd.grad(total, z, create_graph=True)
    return g


def _batched_vjp(out: Tensor, z: Tensor, vectors: Tensor) -> Tensor:
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
    z = _as_input(z)
    g = _latent_grad(head, z, target, loss_fn)
    return _batched_vjp(g, z, _basis(z)).transpose(0, 1)


def _closed_form(head: nn.Linear, z: Tensor) -> Tensor:
    """Softmax cross-entropy through a linear head: H_i = W^T (diag(p_i) - p_i p_i^T) W."""
    p = torch.softmax(head(z), dim=-1)
    curvature = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    w = head.weight
    return torch.einsum("kd,bkl,le->bde", w, curvature, w)


def _gauss_newton_mse(head: Callable, z: Tensor, target: Tensor) -> Tensor:
    """(2/N) J_i^T J_i: exact for piecewise-linear decoders with no output nonlinearity."""
    z = _as_input(z)
    out = head(z)
    n = out[0].numel()
    # forward-mode Jacobian by the double-vjp trick: J v = d(J^T u)/du . v, u a dummy cotangent
    u = torch.zeros_like(out, requires_grad=True)
    (jt_u,) = torch.autograd.grad(out, z, grad_outputs=u, create_graph=True)
    (jv,) = torch.autograd.grad(jt_u, u, grad_outputs=_basis(z), is_grads_batched=True, create_graph=True)
    jac = jv.flatten(2).permute(1, 2, 0)  # (B, N, d)
    return (2.0 / n) * jac.transpose(1, 2) @ jac


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
        method: ``"exact"`` (d batched Hessian-vector products), ``"closed_form"`` (linear head
            with cross-entropy), ``"gauss_newton"`` (MSE decoders) or ``"auto"`` (closed form where
            it applies, exact otherwise).

    Returns:
        Tensor of shape (B, d, d).
    """
    if z.dim() != 2:
        raise HerdError(f"z must have shape (batch, latent_dim), got {tuple(z.shape)}")
    if method not in METHODS:
        raise HerdError(f"unknown Hessian method {method!r}; choose one of: {', '.join(METHODS)}")
    _check_per_sample(head)
    linear_ce = isinstance(head, nn.Linear) and loss == "ce"
    if method == "auto":
        method = "closed_form" if linear_ce else "exact"
    if method == "closed_form":
        if not linear_ce:
            raise HerdError("method 'closed_form' needs an nn.Linear head with loss 'ce'; use method 'exact'")
        return _closed_form(head, z)
    if method == "gauss_newton":
        if loss != "mse":
            raise HerdError("method 'gauss_newton' is defined for loss 'mse' only; use method 'exact'")
        return _gauss_newton_mse(head, z, target)
    return _exact(head, z, target, per_sample_loss(loss))


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
    z = _as_input(z)
    g = _latent_grad(head, z, target, per_sample_loss(loss))
    signs = torch.randint(0, 2, (2 * probes, *z.shape), generator=generator, device="cpu")
    v = (2.0 * signs - 1.0).to(device=z.device, dtype=z.dtype)
    keep = region.to(z.dtype)
    v[probes:] *= keep
    hv = _batched_vjp(g, z, v)
    total = hv[:probes].pow(2).sum(-1).mean(0)
    inside = (hv[probes:] * keep).pow(2).sum(-1).mean(0)
    return inside, total


# public API: blocks, masks, penalties

def class_blocks(num_classes: int, latent_dim: int, shared_dims: int = 0) -> Tensor:
    """Boolean (K, d): row c marks B_c = [c*n, (c+1)*n) with n = (d - shared_dims) / K.

    The shared dims are the last ``shared_dims`` and belong to no class.
    """
    if num_classes < 2:
        raise HerdError(f"class-specific HeRD needs at least 2 classes, got {num_classes}")
    if shared_dims < 0 or latent_dim - shared_dims < num_classes or (latent_dim - shared_dims) % num_classes:
        raise HerdError(
            f"latent_dim {latent_dim} minus shared_dims {shared_dims} does not split into {num_classes} "
            f"class blocks; use latent_dim = {num_classes} * dims_per_class + shared_dims"
        )
    n = (latent_dim - shared_dims) // num_classes
    blocks = torch.zeros(num_classes, latent_dim, dtype=torch.bool)
    for c in range(num_classes):
        blocks[c, c * n:(c + 1) * n] = True
    return blocks


def free_region(blocks: Tensor, variant: str = "reference") -> Tensor:
    """Boolean (K, d, d): the Hessian entries class c may use without penalty.

    ``reference``: the diagonal of B_c and of the shared dims (METHOD.md, exactly).
    ``block``: all of B_c x B_c (off-diagonal entries too) plus the shared diagonal.
    ``purity`` and ``log-purity``: B_c x B_c only, so the penalty is a function of block purity alone;
    a free shared diagonal was measured to pull whole classes' curvature into the shared dims.
    """
    if variant not in VARIANTS:
        raise HerdError(f"unknown HeRD variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    num_classes, d = blocks.shape
    shared = ~blocks.any(0)
    eye = torch.eye(d, dtype=torch.bool)
    own = blocks.unsqueeze(2) & blocks.unsqueeze(1)
    if variant == "reference":
        return eye & (blocks | shared).unsqueeze(1)
    if variant in PURITY_VARIANTS:
        return own
    return own | (eye & shared).unsqueeze(0)


def class_mask(num_classes: int, latent_dim: int, shared_dims: int = 0, alpha_off: float = 0.5,
               alpha_diag: float = 1.0, variant: str = "reference") -> Tensor:
    """(K, d, d) penalty weights M_c for :func:`class_penalty`.

    ``reference``/``block``: alpha_off / (d^2 - d) off the diagonal, alpha_diag / d on it, 0 on the
    free region. ``purity``/``log-purity``: 1 / (d^2 K) outside the free region, so the penalty is the
    mean over classes of the share of |H| mass outside the class's own block.
    """
    blocks = class_blocks(num_classes, latent_dim, shared_dims)
    free = free_region(blocks, variant)
    d = latent_dim
    if variant in PURITY_VARIANTS:
        weights = torch.full((d, d), 1.0 / (d * d * num_classes))
    else:
        weights = torch.full((d, d), alpha_off / (d * d - d))
        weights.fill_diagonal_(alpha_diag / d)
    return weights.expand(num_classes, d, d).masked_fill(free, 0.0).contiguous()


def class_abs_sum(H: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class sum of |H_i| and sample count: ((K, d, d), (K,)); sums over batches add up."""
    onehot = F.one_hot(labels, num_classes).to(H.dtype)
    return torch.einsum("bk,bde->kde", onehot, H.abs()), onehot.sum(0)


def class_mean_abs(H: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class mean of |H_i|: ((K, d, d), present (K,) bool); absent classes are zero."""
    total, counts = class_abs_sum(H, labels, num_classes)
    return total / counts.clamp_min(1).view(-1, 1, 1), counts > 0


def class_penalty(H: Tensor, labels: Tensor, mask: Tensor, log_purity: bool = False) -> Tensor:
    """R_class = sum over classes c in the batch of sum(M_c * Hbar_c) / mean(Hbar_c).

    With ``log_purity`` (and the purity mask, for which that sum is the mean of 1 - P_c) it is instead
    the mean of -log((P_c + delta) / (1 + delta)), which weighs the least pure class most.
    """
    hbar, present = class_mean_abs(H, labels, mask.shape[0])
    ratio = (mask * hbar).sum((1, 2)) / hbar.mean((1, 2)).clamp_min(torch.finfo(H.dtype).tiny)
    if log_purity:
        return _log_impurity(1 - mask.shape[0] * ratio[present])
    return ratio[present].sum()


def _log_impurity(purity: Tensor) -> Tensor:
    return -torch.log((purity.clamp(0, 1) + LOG_PURITY_DELTA) / (1 + LOG_PURITY_DELTA)).mean()


def universal_penalty(H: Tensor, alpha_off: float = 0.5) -> Tensor:
    """R_universal = alpha_off * offdiag(Hbar) / sum(Hbar) + ||diag(Hbar)||_2 / d, Hbar = mean |H_i|."""
    hbar = H.abs().mean(0)
    diag = torch.diagonal(hbar)
    total = hbar.sum().clamp_min(torch.finfo(H.dtype).tiny)
    return alpha_off * (hbar.sum() - diag.sum()) / total + diag.norm() / hbar.shape[0]


def probe_penalty(inside: Tensor, total: Tensor, labels: Tensor, num_classes: int, log_purity: bool = False) -> Tensor:
    """Mean over classes in the batch of 1 - sum_i inside_i / sum_i total_i (squared Frobenius mass),
    or of -log((purity + delta) / (1 + delta)) with ``log_purity``."""
    onehot = F.one_hot(labels, num_classes).to(total.dtype)
    tot = onehot.T @ total
    ins = onehot.T @ inside
    present = onehot.sum(0) > 0
    # a class without curvature counts as pure, as in the exact path
    purity = torch.where(tot > 0, ins / tot.clamp_min(torch.finfo(total.dtype).tiny), torch.ones_like(tot))
    return _log_impurity(purity[present]) if log_purity else (1.0 - purity[present]).mean()


def penalty_weight(epoch: int, warmup: int = 0, ramp: int = 0) -> float:
    """Fraction of the penalty in force at ``epoch`` (0-based): 0 before warm-up, then a linear ramp."""
    if epoch < warmup:
        return 0.0
    return min(1.0, (epoch - warmup + 1) / ramp) if ramp > 0 else 1.0


class HeRD(nn.Module):
    """Class-specific (or universal) Hessian regularizer for disentanglement.

    Args:
        num_classes: K, the number of class blocks.
        latent_dim: d; ``d - shared_dims`` must be a multiple of K.
        mode: ``"class"`` (class blocks) or ``"universal"`` (diagonal Hessian, no labels used).
        shared_dims: s dims at the end of z that belong to every class.
        alpha_off, alpha_diag: weights of off-diagonal and out-of-block diagonal mass.
        variant: ``"reference"`` (METHOD.md exactly), ``"block"`` (the whole own block is free),
            ``"purity"`` (penalise the share of mass outside the own block directly) or
            ``"log-purity"`` (-log of each class's purity, so a collapsed class weighs most).
        probes: if set, estimate block masses with this many Rademacher probes instead of forming
            H (purity variants only; cost independent of d).
        method: Hessian method for :func:`latent_hessian`.
    """

    def __init__(self, num_classes: int, latent_dim: int, mode: str = "class", shared_dims: int = 0,
                 alpha_off: float = 0.5, alpha_diag: float = 1.0, variant: str = "reference",
                 probes: int | None = None, method: str = "auto"):
        super().__init__()
        if mode not in MODES:
            raise HerdError(f"unknown HeRD mode {mode!r}; choose one of: {', '.join(MODES)}")
        if probes is not None and (mode != "class" or variant not in PURITY_VARIANTS):
            raise HerdError("probes estimate block purity: use them with mode 'class' and variant 'purity' "
                            "or 'log-purity'")
        self.num_classes, self.latent_dim, self.shared_dims = num_classes, latent_dim, shared_dims
        self.mode, self.variant, self.probes, self.method = mode, variant, probes, method
        self.alpha_off, self.alpha_diag = alpha_off, alpha_diag
        self.register_buffer("blocks", class_blocks(num_classes, latent_dim, shared_dims), persistent=False)
        mask = class_mask(num_classes, latent_dim, shared_dims, alpha_off, alpha_diag, variant)
        self.register_buffer("mask", mask if mode == "class" else None, persistent=False)

    def block(self, c: int) -> Tensor:
        """Indices of the latent dims that class ``c`` owns."""
        if not 0 <= c < self.num_classes:
            raise HerdError(f"class {c} is out of range; valid classes are 0..{self.num_classes - 1}")
        return self.blocks[c].nonzero().flatten()

    @property
    def shared(self) -> Tensor:
        """Indices of the shared dims."""
        return (~self.blocks.any(0)).nonzero().flatten()

    def penalty(self, H: Tensor, labels: Tensor | None = None) -> Tensor:
        """The penalty of precomputed Hessians H (B, d, d), e.g. a sum of several losses' Hessians."""
        if self.mode == "universal":
            return universal_penalty(H, self.alpha_off)
        return class_penalty(H, labels, self.mask, self.variant == "log-purity")

    def forward(self, head: Callable, z: Tensor, target, labels: Tensor | None = None, loss: Loss = "ce") -> Tensor:
        """Scalar penalty for ``loss(head(z), target)``; ``labels`` pick each sample's block."""
        if self.mode == "class" and labels is None:
            raise HerdError("class-specific HeRD needs the labels of the batch")
        if self.probes is not None:
            inside, total = hessian_block_mass(head, z, target, self.blocks[labels], loss, self.probes)
            return probe_penalty(inside, total, labels, self.num_classes, self.variant == "log-purity")
        return self.penalty(latent_hessian(head, z, target, loss, self.method).float(), labels)

    def extra_repr(self) -> str:
        return (f"mode={self.mode}, variant={self.variant}, num_classes={self.num_classes}, "
                f"latent_dim={self.latent_dim}, shared_dims={self.shared_dims}")


def sum_losses(heads: Sequence[Callable], losses: Sequence[Loss]) -> tuple[Callable, LossFn]:
    """One head and loss whose Hessian is the sum of the given ones (for ``wrt="both"``).

    The combined head maps z to a tuple of outputs; the combined target is a matching tuple.
    """
    fns = [per_sample_loss(loss) for loss in losses]

    def head(z: Tensor):
        return tuple(h(z) for h in heads)

    def loss(outputs, targets) -> Tensor:
        return sum(fn(o, t) for fn, o, t in zip(fns, outputs, targets))

    return head, loss
