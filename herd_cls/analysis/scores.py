"""The metrics a report shows: one :class:`Metric` per entry in one registry, ``METRICS``.

A metric reads the :class:`Evidence` gathered once per run (test latents, purity, attributions) and returns
a :class:`Score` (overall and per class), or None where it does not apply to the run (image sweep
specificity without a decoder). Analysis, report pages, ``--compare`` and the CLI read the registry, so
adding a metric is one entry (and its test):

>>> register(Metric("latent_norm", "mean |z|", lambda ev: Score(float(ev.z.norm(dim=1).mean()), [...])))
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..layout import BlockLayout
from ..metrics import attribution_alignment, sweep_specificity
from ..models import LatentModel
from ..purity import Purity
from ..registry import Registry
from .sweep import block_sweep_effect, decoded_block_effect

IMAGE_SWEEP_SAMPLES = 2000  # test images whose decoded sweeps measure image sweep specificity


@dataclass
class Score:
    """A metric's value on the test split: overall, and per class (NaN for a class it could not measure)."""

    overall: float
    per_class: list[float]


@dataclass
class Evidence:
    """What the metrics of one run read. x (N, C, H, W), z (N, d), y (N,), logits (N, K) are the test
    split; latent_attribution (N, d) the attribution of each image's true-class logit to each latent dim."""

    model: LatentModel
    layout: BlockLayout
    x: Tensor
    z: Tensor
    y: Tensor
    logits: Tensor
    purity: Purity
    latent_attribution: Tensor

    @property
    def std(self) -> Tensor:
        return self.z.std(0)


@dataclass(frozen=True)
class Metric:
    """One metric: its key, label, which direction is better, its chance level for a layout (None: no
    meaningful chance) and ``compute(evidence) -> Score | None``."""

    name: str
    label: str
    compute: Callable[[Evidence], Score | None]
    chance: Callable[[BlockLayout], float] | None = None
    higher_is_better: bool = True
    help: str = ""

    def chance_level(self, layout: BlockLayout) -> float:
        return math.nan if self.chance is None else float(self.chance(layout))


METRICS: Registry[Metric] = Registry("metric")


def register(metric: Metric) -> Metric:
    """Add ``metric`` to :data:`METRICS` under its name."""
    return METRICS.register(metric.name)(metric)


def metrics() -> list[Metric]:
    """Every registered metric, in registration order."""
    return [METRICS.get(name) for name in METRICS.names(sort=False)]


def score_all(evidence: Evidence) -> dict[str, Score]:
    """Every metric that applies to the run: name -> Score."""
    scores = {m.name: m.compute(evidence) for m in metrics()}
    return {name: s for name, s in scores.items() if s is not None}


def _accuracy(ev: Evidence) -> Score:
    correct = (ev.logits.argmax(1) == ev.y).float()
    return Score(float(correct.mean()), [float(correct[ev.y == c].mean()) if (ev.y == c).any() else math.nan
                                         for c in range(ev.layout.num_classes)])


def _from_dict(result: dict, key: str) -> Score:
    return Score(result[key], result[f"{key}_per_class"])


def _image_sweep_specificity(ev: Evidence) -> Score | None:
    if ev.model.decode is None:
        return None
    n = IMAGE_SWEEP_SAMPLES
    effect = decoded_block_effect(ev.model, ev.z[:n], ev.y[:n], ev.layout, ev.std)
    return _from_dict(sweep_specificity(effect), "sweep_specificity")


register(Metric("accuracy", "test accuracy", _accuracy, chance=lambda layout: 1 / layout.num_classes))
register(Metric("block_purity", "Hessian block purity",
                lambda ev: Score(ev.purity.mean, ev.purity.per_class.tolist()), chance=BlockLayout.chance,
                help="share of each class's mean |Hessian| of the loss w.r.t. z inside its own block"))
register(Metric("attribution_alignment", "latent attribution alignment",
                lambda ev: _from_dict(attribution_alignment(ev.latent_attribution, ev.y, ev.layout),
                                      "attribution_alignment"),
                chance=lambda layout: layout.dims_per_class / layout.latent_dim,
                help="share of the true-class logit's latent attribution inside the class's block"))
register(Metric("sweep_specificity", "sweep specificity",
                lambda ev: _from_dict(sweep_specificity(block_sweep_effect(ev.model, ev.z, ev.y, ev.layout, ev.std)),
                                      "sweep_specificity"),
                chance=lambda layout: 1 / layout.num_classes,
                help="how much sweeping a class's block moves that class's logit rather than the others"))
register(Metric("image_sweep_specificity", "image sweep specificity", _image_sweep_specificity,
                chance=lambda layout: 1 / layout.num_classes,
                help="share of a class's decoded image change made by its own block (decoder runs)"))

