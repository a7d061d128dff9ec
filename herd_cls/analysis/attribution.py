"""captum adapters: attributions over input pixels and over latent dims (z as the head's input).

Attributing with z as the input of the head needs no layer hooks, so timm's in-place activations
cannot break it; models are put in eval mode; integrated gradients run in internal batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..registry import HerdError, Registry
from .latents import evaluating


@dataclass(frozen=True)
class AttributionMethod:
    """One ``--method``: ``attribute(fn, x, target, baseline, batch) -> (same shape as x)`` with
    captum; ``gradient_free`` when it needs only forward passes of ``fn``."""

    name: str
    help: str
    attribute: Callable[[Callable, Tensor, Tensor, Tensor, int], Tensor]
    gradient_free: bool = False


ATTRIBUTIONS: Registry[AttributionMethod] = Registry("attribution method")


def _ig(fn: Callable, x: Tensor, target: Tensor, baseline: Tensor, batch: int) -> Tensor:
    from captum.attr import IntegratedGradients

    return IntegratedGradients(fn).attribute(
        x, baselines=baseline, target=target, n_steps=32, internal_batch_size=8 * batch
    )


def _saliency(fn, x, target, baseline, batch):
    from captum.attr import Saliency

    return Saliency(fn).attribute(x, target=target, abs=True)


def _gradient_shap(fn, x, target, baseline, batch):
    from captum.attr import GradientShap

    baselines = torch.cat([baseline, baseline + 0.1 * torch.randn_like(baseline)])
    return GradientShap(fn).attribute(
        x, baselines=baselines, target=target, n_samples=8, stdevs=0.05
    )


def _occlusion(fn, x, target, baseline, batch):
    from captum.attr import Occlusion

    window = (
        (1,) if x.dim() == 2 else (x.shape[1], max(1, x.shape[2] // 8), max(1, x.shape[3] // 8))
    )
    stride = (
        (1,) if x.dim() == 2 else (x.shape[1], max(1, x.shape[2] // 16), max(1, x.shape[3] // 16))
    )
    return Occlusion(fn).attribute(
        x,
        sliding_window_shapes=window,
        strides=stride,
        baselines=baseline[:1],
        target=target,
        perturbations_per_eval=batch,
    )


ATTRIBUTIONS.add(
    AttributionMethod(
        "integrated-gradients", "integrated gradients from the baseline, 32 steps", _ig
    )
)
ATTRIBUTIONS.add(AttributionMethod("saliency", "|gradient| of the target logit", _saliency))
ATTRIBUTIONS.add(
    AttributionMethod(
        "gradient-shap", "GradientSHAP around the baseline, 8 samples", _gradient_shap
    )
)
ATTRIBUTIONS.add(
    AttributionMethod(
        "occlusion",
        "the target logit's drop when a patch (one latent dim) is set to the baseline",
        _occlusion,
        gradient_free=True,
    )
)


def attribute(
    fn: Callable[[Tensor], Tensor],
    inputs: Tensor,
    target: Tensor,
    method: str = "integrated-gradients",
    baseline: Tensor | None = None,
    batch_size: int = 64,
) -> Tensor:
    """Attribution of logit ``target[i]`` to every element of ``inputs[i]``; same shape as
    ``inputs``.

    Args:
        fn: inputs -> logits (a model, run in eval mode and given back in its own mode, or a head
            taking z).
        baseline: a reference input of shape (1, ...) (default zeros: black images, or the origin of
            z).
        batch_size: samples per call; integrated gradients evaluate 8 x this many path points at
            once.
    """
    entry = ATTRIBUTIONS.get(method)
    baseline = torch.zeros_like(inputs[:1]) if baseline is None else baseline
    # gradient-shap samples baselines (torch and numpy): reproducible, without touching global state
    np_state = np.random.get_state()
    with (
        torch.random.fork_rng(devices=[]),
        evaluating(fn),
        torch.set_grad_enabled(not entry.gradient_free),
    ):
        torch.manual_seed(0)
        np.random.seed(0)
        chunks = [
            entry.attribute(fn, x, t, baseline, batch_size).detach()
            for x, t in zip(inputs.split(batch_size), target.split(batch_size))
        ]
    np.random.set_state(np_state)
    return torch.cat(chunks)


def class_latent_attribution(
    head: Callable,
    z: Tensor,
    y: Tensor,
    num_classes: int,
    method: str = "integrated-gradients",
    baseline: Tensor | None = None,
) -> dict:
    """Latent attributions of the true-class logit, per sample and as a class x dim matrix.

    Returns:
        {"per_sample": (N, d), "matrix": (K, d) mean |attribution| of class c's samples}.
    """
    if len(z) == 0:
        raise HerdError("no samples to attribute")
    per_sample = attribute(head, z, y, method, baseline)
    matrix = torch.stack(
        [
            per_sample[y == c].abs().mean(0) if (y == c).any() else torch.zeros(z.shape[1])
            for c in range(num_classes)
        ]
    )
    return {"per_sample": per_sample, "matrix": matrix}
