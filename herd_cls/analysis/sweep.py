"""Class-conditional latent sweeps: move one latent dim of real samples and watch the outputs (class
probabilities, logits, decoded images, the loss)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from ..block_curvature import on_blocks
from ..layout import BlockLayout
from ..models import LatentModel
from .latents import evaluating


SPAN, STEPS = 2.0, 7  # the default sweep: -2 to +2 standard deviations in 7 steps


def sweep_offsets(span: float, steps: int) -> Tensor:
    """(steps,) offsets in units of a dim's standard deviation, from -span to +span."""
    return torch.linspace(-span, span, steps)


def _device(model, z: Tensor) -> torch.device:
    """Where the model's weights are (the latents may have been gathered on the CPU); z's device for
    a model without weights."""
    first = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return z.device if first is None else first.device


def _swept(z: Tensor, dims: Tensor, std: Tensor, offsets: Tensor) -> Tensor:
    """(D * T * S, d): every sample of z (S, d) with dim dims[i] moved by each offset (T,) times
    std[dims[i]], ordered dim, offset, sample."""
    zs = z.unsqueeze(0).unsqueeze(0).repeat(len(dims), len(offsets), 1, 1)  # (D, T, S, d)
    moves = offsets.view(1, -1, 1) * std[dims].view(-1, 1, 1).to(z)  # (D, T, 1)
    zs[torch.arange(len(dims)), :, :, dims] += moves
    return zs.reshape(-1, z.shape[1])


@torch.no_grad()
def sweep(
    model: LatentModel,
    z: Tensor,
    dims: list[int],
    std: Tensor,
    span: float = SPAN,
    steps: int = STEPS,
    decoder=None,
) -> dict:
    """Sweep each dim in ``dims`` around every sample's own value.

    Args:
        z: (S, d) latents of the samples; std: (d,) each dim's standard deviation over the data.
        decoder: z -> images to draw the sweep with (default: the model's own decoder, if any).
    Returns:
        {"offsets": (T,), "dims": [D], "probs": (D, T, S, K), "logits": (D, T, S, K),
         "images": (D, T, S, C, H, W) or None without a decoder}.
    """
    offsets = sweep_offsets(span, steps).to(z)
    flat = _swept(z, torch.tensor(dims, dtype=torch.long), std, offsets).to(_device(model, z))
    images = None
    with evaluating(model):
        logits = model.classify(flat).view(len(dims), steps, z.shape[0], -1)
        decoder = decoder if decoder is not None else model.decode
        if decoder is not None:
            out = decoder(flat)
            images = out.view(len(dims), steps, z.shape[0], *out.shape[1:])
    return {
        "offsets": offsets.cpu(),
        "dims": list(dims),
        "logits": logits.cpu(),
        "probs": logits.softmax(-1).cpu(),
        "images": None if images is None else images.cpu(),
    }


@torch.no_grad()
def sweep_change(
    model: LatentModel,
    z: Tensor,
    dims: Sequence[int] | Tensor,
    std: Tensor,
    span: float,
    steps: int,
    probabilities: bool = False,
    chunk: int = 64,
) -> Tensor:
    """(D, K) how much sweeping each dim moves every class's logit (with ``probabilities``, its
    probability): dim dims[i] of each sample of z (S, d) moved from -span to +span of its std (d,)
    in ``steps`` steps, the mean over samples and steps of |output(moved) - output(z)|. Only the
    classifier runs (no decoder), ``chunk`` dims at a time, so every dim of a wide latent costs one
    small batch."""
    offsets = sweep_offsets(span, steps).to(z)
    device = _device(model, z)
    read = (lambda out: out.softmax(-1)) if probabilities else (lambda out: out)
    with evaluating(model):
        base = read(model.classify(z.to(device))).cpu()
        change = []
        for part in torch.as_tensor(dims, dtype=torch.long).split(chunk):
            moved = read(model.classify(_swept(z, part, std, offsets).to(device))).cpu()
            change.append((moved.view(len(part), steps, len(z), -1) - base).abs().mean((1, 2)))
    return torch.cat(change)


def block_sweep_effect(
    model: LatentModel,
    z: Tensor,
    y: Tensor,
    layout: BlockLayout,
    std: Tensor,
    span: float = SPAN,
    steps: int = STEPS,
) -> Tensor:
    """(K, K) effect matrix for :func:`herd_cls.metrics.sweep_specificity`.

    Row c: sweeping each dim of B_c on the samples of class c, the mean |change| of every class's
    logit (:func:`sweep_change`, averaged over B_c's dims). A block that moves only its own class's
    logit scores specificity 1. Only the classifier runs (an autoencoder's decoder is not).
    """
    effect = torch.full((layout.num_classes, layout.num_classes), float("nan"))
    for c in range(layout.num_classes):
        if (y == c).any():
            effect[c] = sweep_change(model, z[y == c], layout.block(c), std, span, steps).mean(0)
    return effect


@torch.no_grad()
def decoded_block_effect(
    model: LatentModel, z: Tensor, y: Tensor, layout: BlockLayout, std: Tensor, span: float = SPAN
) -> Tensor:
    """(K, K) effect matrix of the decoder, for :func:`herd_cls.metrics.sweep_specificity`.

    Row c: on the samples of class c, moving one dim of block B_b from -span to +span of its std,
    the mean absolute change of the decoded image, averaged over B_b's dims. A class whose images
    change only when its own block moves scores specificity 1.
    """
    num_classes, d = layout.num_classes, layout.latent_dim
    effect = torch.full((num_classes, num_classes), float("nan"))
    for c in range(num_classes):
        zc = z[y == c]
        if len(zc) == 0:
            continue
        # (d, 2, S, C, H, W)
        images = sweep(model, zc, list(range(d)), std, span, steps=2)["images"]
        change = (images[:, 1] - images[:, 0]).abs().flatten(1).mean(1)  # (d,)
        effect[c] = torch.stack([change[layout.block(b)].mean() for b in range(num_classes)])
    return effect


def exemplars(x: Tensor, z: Tensor, dims: list[int], count: int = 10) -> dict:
    """For each dim, ``count`` of the given images ordered by that dim's value, from lowest to
    highest (evenly spaced in rank), so a reader sees what the dim tracks in real data.

    Args:
        x: (N, C, H, W) images, z: (N, d) their latents (e.g. the test images of one class).
    Returns:
        {"dims": [D], "images": (D, count, C, H, W), "values": (D, count)}.
    """
    count = min(count, len(z))
    ranks = torch.linspace(0, len(z) - 1, count).round().long()
    order = z[:, dims].argsort(0)[ranks].T  # (D, count)
    return {"dims": list(dims), "images": x[order], "values": torch.gather(z[:, dims].T, 1, order)}


@torch.no_grad()
def loss_block_effect(
    head: Callable[[Tensor], Tensor], z: Tensor, y: Tensor, layout: BlockLayout, step: float
) -> Tensor:
    """(N, K) mean |change| of each image's cross-entropy when one dim of block b moves by
    +-``step``, averaged over b's dims and both signs: the same latent distance for every block."""
    import torch.nn.functional as F

    logits = head(z)
    base = F.cross_entropy(logits, y, reduction="none")
    if on_blocks(head, layout):
        return _block_head_effect(head, z, y, logits, base, layout, step)
    effect = torch.zeros(len(z), layout.num_classes)
    for b in range(layout.num_classes):
        for dim in layout.block(b).tolist():
            for sign in (1.0, -1.0):
                moved = z.clone()
                moved[:, dim] += sign * step
                effect[:, b] += (
                    (F.cross_entropy(head(moved), y, reduction="none") - base).abs().cpu()
                )
    return effect / (2 * layout.dims_per_class)


def _block_head_effect(
    head, z: Tensor, y: Tensor, logits: Tensor, base: Tensor, layout: BlockLayout, step: float
) -> Tensor:
    """:func:`loss_block_effect` for a block head: moving block b's dims changes logit b only, so
    each move costs one logit, not K (linear in the class count, not quadratic)."""
    effect = torch.zeros(len(z), layout.num_classes)
    rows = torch.arange(len(z))
    for b in range(layout.num_classes):
        others = torch.logsumexp(
            logits.index_fill(1, torch.tensor([b], device=z.device), float("-inf")), 1
        )
        for dim in layout.block(b).tolist():
            for sign in (1.0, -1.0):
                moved = z.clone()
                moved[:, dim] += sign * step
                new = head.logit(moved, b)
                own = torch.where(y == b, new, logits[rows, y])
                effect[:, b] += (torch.logaddexp(others, new) - own - base).abs().cpu()
    return effect / (2 * layout.dims_per_class)
