"""Classifier heads z -> logits: one :class:`HeadKind` per ``--head`` in one registry, ``HEADS``.

A head kind carries what the rest of the package asks of it: whether each logit reads only its own
class block (then some metrics are fixed by construction) and why ``--reg class`` would not work on
it.

>>> head = make_head("capsule", 6, 3)   # logit k = |z_{B_k}| on 3 blocks of 2 dims
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .block_curvature import block_closed_form
from .layout import BlockLayout
from .registry import Registry


class BlockHead(nn.Module):
    """Logit k from its own small MLP on class k's block and the shared dims only.

    The blocks are those of the model's :class:`~herd_cls.layout.BlockLayout`. Every logit then
    depends on its own block, so a confident sample's loss curvature sits in its class's block by
    construction.
    """

    def __init__(self, layout: BlockLayout, hidden: int = 64):
        super().__init__()
        num_classes = layout.num_classes
        self.register_buffer("index", layout.head_index(), persistent=False)
        # each row of index: the class's own dims, then the shared ones
        self.shared_dims = layout.shared_dims
        width = layout.dims_per_class + layout.shared_dims
        self.w1 = nn.Parameter(torch.randn(num_classes, width, hidden) / math.sqrt(width))
        self.b1 = nn.Parameter(torch.zeros(num_classes, hidden))
        self.w2 = nn.Parameter(torch.randn(num_classes, hidden) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(num_classes))

    def forward(self, z: Tensor) -> Tensor:
        zk = z[:, self.index]  # (B, K, n + s)
        h = nn.functional.gelu(torch.einsum("bki,kih->bkh", zk, self.w1) + self.b1)
        return torch.einsum("bkh,kh->bk", h, self.w2) + self.b2

    def logit(self, z: Tensor, k: int) -> Tensor:
        """Logit ``k`` alone (B,): it reads only class k's block and the shared dims."""
        h = nn.functional.gelu(z[:, self.index[k]] @ self.w1[k] + self.b1[k])
        return h @ self.w2[k] + self.b2[k]

    def logit_derivatives(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Logits (B, K) with each logit's gradient (B, K, m) and Hessian (B, K, m, m) with respect
        to its own dims ``index`` (K, m): in closed form, so that curvature needs no Hessian-vector
        products at any width (:func:`herd_cls.curvature.latent_hessian`). GELU here is the exact
        (erf) one, as in :meth:`forward`."""
        a = torch.einsum("bki,kih->bkh", z[:, self.index], self.w1) + self.b1  # (B, K, hidden)
        cdf = 0.5 * (1 + torch.erf(a / math.sqrt(2)))
        pdf = torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
        logits = torch.einsum("bkh,kh->bk", a * cdf, self.w2) + self.b2
        # gelu' = cdf + a pdf
        grad = torch.einsum("kih,bkh->bki", self.w1, self.w2 * (cdf + a * pdf))
        curv = self.w2 * pdf * (2 - a * a)  # gelu'' = pdf (2 - a^2)
        hess = (self.w1 * curv[:, :, None, :]) @ self.w1.transpose(1, 2)  # (B, K, m, m)
        return logits, grad, hess

    def closed_form_hessian(self, z: Tensor, target, loss_fn) -> Tensor:
        """Per-sample Hessians (B, d, d) of ``loss_fn(self(z), target)`` w.r.t. z, exact, at any
        width."""
        return block_closed_form(self, z, target, loss_fn)


class CapsuleHead(nn.Module):
    """Logit k = |z_{B_k}|, the length of class k's block (capsule-style; no parameters, shared dims
    unread): a control that shows what reading each class off its own block gives without any
        regularizer."""

    EPS = 1e-6  # inside the square root, so that the logit is smooth at a zero block

    def __init__(self, layout: BlockLayout):
        super().__init__()
        self.num_classes, self.dims_per_class = layout.num_classes, layout.dims_per_class

    def forward(self, z: Tensor) -> Tensor:
        blocks = z[:, : self.num_classes * self.dims_per_class].view(
            len(z), self.num_classes, self.dims_per_class
        )
        return (blocks.pow(2).sum(-1) + self.EPS).sqrt()

    def logit(self, z: Tensor, k: int) -> Tensor:
        n = self.dims_per_class
        return (z[:, k * n : (k + 1) * n].pow(2).sum(-1) + self.EPS).sqrt()


@dataclass(frozen=True)
class HeadKind:
    """One ``--head``: ``build(d, K, layout, hidden)`` returns the module z (B, d) -> logits (B, K);
    ``layout`` is the latent's class blocks, or None where d does not split into them (then a kind
    that needs blocks splits d evenly, or raises the error naming the fix).

    own_blocks: each logit reads only its own class block (and the shared dims), so sweeping block c
    moves logit c alone whatever the weights; class_herd_warning: why ``--reg class`` cannot work on
    it, or None.
    """

    name: str
    help: str
    build: Callable[[int, int, BlockLayout | None, int], nn.Module]
    own_blocks: bool = False
    class_herd_warning: str | None = None


HEADS: Registry[HeadKind] = Registry("head")


def make_head(
    kind: str,
    latent_dim: int,
    num_classes: int,
    hidden: int = 64,
    layout: BlockLayout | None = None,
) -> nn.Module:
    """The classifier head ``kind`` z (B, latent_dim) -> logits (B, num_classes); an unknown kind
    lists the valid ones."""
    return HEADS.get(kind).build(latent_dim, num_classes, layout, hidden)


def _blocks(d: int, k: int, layout: BlockLayout | None) -> BlockLayout:
    return layout or BlockLayout.split(k, d)


HEADS.add(
    HeadKind(
        "block",
        "one small MLP per class that sees only its own block and the shared dims",
        lambda d, k, layout, hidden: BlockHead(_blocks(d, k, layout), hidden),
        own_blocks=True,
    )
)
HEADS.add(
    HeadKind(
        "mlp",
        "an MLP on the whole latent",
        lambda d, k, layout, hidden: nn.Sequential(
            nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, k)
        ),
        class_herd_warning="--reg class with --head mlp keeps purity low: every logit reads every "
        "latent dim, so curvature leaks across blocks (near chance on pre-logits, "
        "docs/what-did-not-work.md); use --head block",
    )
)
HEADS.add(
    HeadKind(
        "linear",
        "a linear map (cannot carry class-specific curvature)",
        lambda d, k, layout, hidden: nn.Linear(d, k),
        class_herd_warning="--reg class with --head linear cannot give each class its own "
        "curvature: a linear head's Hessian W^T (diag p - p p^T) W spans every block "
        "(docs/method.md); use --head block",
    )
)
HEADS.add(
    HeadKind(
        "capsule",
        "logit k = the length of class k's block, no parameters (a control for what the block "
        "architecture gives without a regularizer)",
        lambda d, k, layout, hidden: CapsuleHead(_blocks(d, k, layout)),
        own_blocks=True,
    )
)
