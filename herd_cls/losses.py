"""The per-sample losses HeRD reads curvature of: one :class:`OutputLoss` per name in ``LOSSES``.

An entry gives the loss of each sample (B,) and its curvature M in output space (Gauss-Newton's
middle factor), both as a bilinear form a^T M b and as the d x d matrix J^T M J of a Jacobian's
columns J, so that the forward-only curvature methods (:mod:`herd_cls.curvature`) need no second
derivative of the loss.

>>> LOSSES.get("bce").per_sample(decoded, images)      # (B,): the mean over each image's pixels
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import HerdError, Registry

LossFn = Callable[[Tensor, Tensor], Tensor]
"""(head output, target) -> per-sample loss, shape (B,)."""
Loss = Union[str, LossFn]
Form = Callable[[Tensor, Tensor], Tensor]
"""(a, b) -> a^T M b per sample, for output-space directions a, b of shape (..., B,
*output.shape[1:])."""


@dataclass(frozen=True)
class OutputLoss:
    """A named per-sample loss and its output-space curvature.

    per_sample: (output, target) -> (B,). form: output -> :data:`Form`. gram: (output, columns J of
    shape (d, B, *output.shape[1:])) -> (B, d, d) J^T M J. reconstruction: it compares images, so
    ``--recon-loss`` may name it.
    """

    name: str
    help: str
    per_sample: LossFn
    form: Callable[[Tensor], Form]
    gram: Callable[[Tensor, Tensor], Tensor]
    reconstruction: bool = True


LOSSES: Registry[OutputLoss] = Registry("loss")


def margin_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy (B,) of logits (B, K), written as softplus(m) with the soft margin m =
    logsumexp_{k != y} f_k - f_y, so that its derivatives stay accurate for confident samples.

    ``F.cross_entropy`` differentiates to p_y - 1, which float32 rounds to 0 once p_y rounds to 1 (a
    margin of about 17): the own class's terms of the Hessian vanish while the other classes' terms,
    of order p_k, survive, and a confident sample's curvature reads as lying wholly outside its
    block. Here the derivatives are sigmoid(m) and sigmoid(m)(1 - sigmoid(m)) times those of m: no 1
    - p_y.
    """
    own = F.one_hot(labels, logits.shape[1]).bool()
    margin = (
        torch.logsumexp(logits.masked_fill(own, float("-inf")), dim=1)
        - logits.gather(1, labels[:, None])[:, 0]
    )
    return F.softplus(margin)


def _softmax_form(out: Tensor) -> Form:
    p = torch.softmax(out, -1)
    return lambda a, b: (p * a * b).sum(-1) - (p * a).sum(-1) * (p * b).sum(-1)


def _softmax_gram(out: Tensor, jac: Tensor) -> Tensor:
    """M = diag(p) - p p^T, without a (d, d, B, K) product."""
    p = torch.softmax(out, -1)
    jp = (jac * p).sum(-1)  # (d, B)
    return torch.einsum("ibk,jbk->bij", jac * p, jac) - torch.einsum("ib,jb->bij", jp, jp)


def _sample_dims(out: Tensor) -> tuple[int, ...]:
    """A sample's elements, whatever leading dims a and b have."""
    return tuple(range(-(out.dim() - 1), 0))


def _diagonal_gram(weight: Tensor, jac: Tensor) -> Tensor:
    """J^T diag(weight) J per sample, for a diagonal output curvature ``weight`` shaped like the
    output."""
    d, b = jac.shape[:2]
    flat = jac.reshape(d, b, -1)
    return torch.einsum("ibn,jbn->bij", flat * weight.reshape(1, b, -1), flat)


def _bce_scale(out: Tensor) -> Tensor:
    """1 / M: the decoder ends in a sigmoid, so M is p(1 - p) / n on the logits and J_p is divided
    by p(1 - p)."""
    return out[0].numel() * (out * (1 - out)).clamp_min(1e-4)


LOSSES.add(
    OutputLoss(
        "ce",
        "softmax cross-entropy on logits (B, K), as a soft margin (:func:`margin_cross_entropy`)",
        margin_cross_entropy,
        _softmax_form,
        _softmax_gram,
        reconstruction=False,
    )
)
LOSSES.add(
    OutputLoss(
        "mse",
        "squared error, the mean over each sample's elements",
        lambda out, x: (out - x).pow(2).flatten(1).mean(1),
        lambda out: lambda a, b: (2.0 / out[0].numel()) * (a * b).sum(_sample_dims(out)),
        lambda out, jac: _diagonal_gram(torch.full_like(out, 2.0 / out[0].numel()), jac),
    )
)
LOSSES.add(
    OutputLoss(
        "bce",
        "binary cross-entropy of a sigmoid output, the mean over each sample's elements",
        lambda out, x: F.binary_cross_entropy(out, x, reduction="none").flatten(1).mean(1),
        lambda out: lambda a, b, scale=_bce_scale(out): (a * b / scale).sum(_sample_dims(out)),
        lambda out, jac: _diagonal_gram(1.0 / _bce_scale(out), jac),
    )
)


def per_sample_loss(loss: Loss) -> LossFn:
    """The per-sample loss of a name in ``LOSSES`` or a callable; a tuple of them is the sum of
    those losses over a tuple of (outputs, targets), as :func:`herd_cls.curvature.sum_losses`
    makes."""
    if isinstance(loss, (tuple, list)):
        fns = [per_sample_loss(part) for part in loss]
        return lambda outs, targets: sum(fn(o, t) for fn, o, t in zip(fns, outs, targets))
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise HerdError(
            f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES.names())}, or pass a callable"
        )
    return LOSSES.get(loss).per_sample


def output_loss(loss: Loss) -> OutputLoss:
    """The entry of a loss name, for the forward methods, which need M in closed form."""
    if not isinstance(loss, str) or loss not in LOSSES:
        raise HerdError(
            f"the forward method knows the losses {', '.join(LOSSES.names())} and their tuples; "
            "for a custom loss callable use method 'hvp' or 'exact'"
        )
    return LOSSES.get(loss)
