"""Encode a data set once: images, latents, labels and logits, in memory."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch.utils.data import DataLoader, Dataset

from ..models import LatentModel


@contextmanager
def evaluating(fn):
    """Eval mode for ``fn`` (if it is a module) inside the block, and the caller's mode again after
    it."""
    if not isinstance(fn, torch.nn.Module):
        yield fn
        return
    modes = [m.training for m in fn.modules()]
    fn.eval()
    try:
        yield fn
    finally:
        for m, mode in zip(fn.modules(), modes):
            m.training = mode


@torch.no_grad()
def collect(
    model: LatentModel, dataset: Dataset, batch_size: int = 256, limit: int | None = None
) -> dict:
    """{"x": (N, C, H, W), "z": (N, d), "y": (N,), "logits": (N, K)} for the first ``limit`` images,
    computed in eval mode (the model's own mode is restored afterwards)."""
    with evaluating(model):
        return _collect(model, dataset, batch_size, limit)


def _collect(model: LatentModel, dataset: Dataset, batch_size: int, limit: int | None) -> dict:
    device = next(model.parameters()).device
    xs, zs, ys, logits = [], [], [], []
    seen = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        if limit is not None and seen >= limit:
            break
        x = x.to(device)
        z = model.encode(x)
        xs.append(x.cpu()), zs.append(z.cpu()), ys.append(y), logits.append(model.classify(z).cpu())
        seen += len(y)
    out = {"x": torch.cat(xs), "z": torch.cat(zs), "y": torch.cat(ys), "logits": torch.cat(logits)}
    return {k: v[:limit] for k, v in out.items()} if limit is not None else out
