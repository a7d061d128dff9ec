"""The metrics a report shows: one :class:`Metric` per entry in one registry, ``METRICS``.

A metric reads the :class:`~herd_cls.analysis.evidence.Evidence` gathered once per run (test
latents, purity, attributions) and returns a :class:`Score` (overall and per class), or None where
it does not apply to the run (image sweep specificity without a decoder). A metric that a run's
architecture fixes whatever training does says so with ``constant``:
``Metric.by_construction(config)`` is then the reason, the metric is not computed for that run, and
the pages and the CLI show the reason in place of a number. Analysis, report pages, ``--compare``
and the CLI read the registry, so adding a metric is one entry (and its test):

>>> METRICS.add(Metric("latent_norm", "mean |z|",
...                    lambda ev: Score(float(ev.z.norm(dim=1).mean()), [...])))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..heads import HEADS
from ..layout import BlockLayout
from ..metrics import attribution_alignment, block_energy, concept_purity, sweep_specificity
from ..registry import Registry
from .decoder import FACTOR_SAMPLES
from .evidence import Evidence
from .sweep import block_sweep_effect, loss_block_effect


@dataclass
class Score:
    """A metric's value on the test split: overall, and per class (NaN for a class it could not
    measure);
    ``error``: the standard error of ``overall`` where the metric is measured on a sample of
        images."""

    overall: float
    per_class: list[float]
    error: float | None = None


@dataclass(frozen=True)
class Metric:
    """One metric: its key, label, which direction is better, its chance level for a layout (None:
    no meaningful chance), ``compute(evidence) -> Score | None`` and ``constant(config) -> str |
    None``: the reason the metric is fixed by the run's architecture rather than decided by training
        (None: it is not)."""

    name: str
    label: str
    compute: Callable[[Evidence], Score | None]
    chance: Callable[[BlockLayout], float] | None = None
    higher_is_better: bool = True
    help: str = ""
    constant: Callable[[dict], str | None] | None = None

    def chance_level(self, layout: BlockLayout) -> float:
        return math.nan if self.chance is None else float(self.chance(layout))

    def by_construction(self, config) -> str | None:
        """Why this metric takes one value on any run with ``config`` (a dict or a Config), or
        None."""
        if self.constant is None or config is None:
            return None
        return self.constant(config if isinstance(config, dict) else vars(config))


METRICS: Registry[Metric] = Registry("metric")


def metrics() -> list[Metric]:
    """Every registered metric, in registration order."""
    return [METRICS.get(name) for name in METRICS.names(sort=False)]


def constant_metrics(config) -> dict[str, str]:
    """name -> reason, for every registered metric that ``config``'s architecture fixes."""
    reasons = {m.name: m.by_construction(config) for m in metrics()}
    return {name: why for name, why in reasons.items() if why}


def score_all(evidence: Evidence) -> dict[str, Score]:
    """Every metric that applies to the run and is not fixed by construction: name -> Score."""
    fixed = constant_metrics(evidence.config)
    scores = {m.name: m.compute(evidence) for m in metrics() if m.name not in fixed}
    return {name: s for name, s in scores.items() if s is not None}


def _accuracy(ev: Evidence) -> Score:
    correct = (ev.logits.argmax(1) == ev.y).float()
    return Score(
        float(correct.mean()),
        [
            float(correct[ev.y == c].mean()) if (ev.y == c).any() else math.nan
            for c in range(ev.layout.num_classes)
        ],
    )


def _from_dict(result: dict, key: str) -> Score:
    return Score(result[key], result[f"{key}_per_class"])


def _image_sweep_specificity(ev: Evidence) -> Score | None:
    effect = ev.image_block_effect
    return None if effect is None else _from_dict(sweep_specificity(effect), "sweep_specificity")


def _own_blocks(config: dict) -> bool:
    return config.get("head") in HEADS and HEADS.get(config["head"]).own_blocks


def _block_head(config: dict) -> str | None:
    """Sweeping B_c changes only logit c under a head whose logits read their own blocks, whatever
    the weights."""
    if _own_blocks(config):
        return (
            f"1 by construction: with the {config['head']} head each logit reads only its own block"
        )
    return None


def _block_head_no_shared(config: dict) -> str | None:
    """Under such a head the true-class logit has no attribution outside its block and the shared
    dims; without shared dims all of it lies in the block."""
    if _own_blocks(config) and not config.get("shared_dims"):
        return (
            f"1 by construction: with the {config['head']} head and no shared dims each logit "
            "reads only its own block"
        )
    return None


def _image_view(key: str) -> Callable[[Evidence], Score]:
    def compute(ev: Evidence) -> Score:
        return Score(ev.purity.image_overall()[key], ev.purity.image_view()[key])

    return compute


LOSS_STEP = 0.5  # latent step of the loss sensitivity, in units of the mean std of the test latents


def loss_block_sensitivity(
    head: Callable[[Tensor], Tensor], z: Tensor, y: Tensor, layout: BlockLayout, step: float
) -> Score:
    """Per class, the share of its images whose loss changes more when their own block moves than
    when any other block moves by the same ``step`` (see :func:`loss_block_effect`); ties count as
    not more. Chance, for blocks that matter alike, is 1 / K."""
    effect = loss_block_effect(head, z, y, layout, step)
    own = effect.gather(1, y.view(-1, 1)).squeeze(1)
    others = effect.masked_fill(torch.nn.functional.one_hot(y, layout.num_classes).bool(), -1.0)
    wins = (own > others.max(1).values).float()
    per_class = [
        float(wins[y == c].mean()) if (y == c).any() else math.nan
        for c in range(layout.num_classes)
    ]
    return Score(float(wins.mean()), per_class)


def _loss_block_sensitivity(ev: Evidence) -> Score:
    step = LOSS_STEP * float(ev.std.mean())
    return loss_block_sensitivity(ev.model.classify, ev.z, ev.y, ev.layout, step)


METRICS.add(
    Metric("accuracy", "test accuracy", _accuracy, chance=lambda layout: 1 / layout.num_classes)
)
METRICS.add(
    Metric(
        "block_purity",
        "Hessian block purity (class mean)",
        lambda ev: Score(ev.purity.mean, ev.purity.per_class.tolist(), ev.purity.standard_error()),
        chance=BlockLayout.chance,
        help="share of each class's mean |Hessian| of the loss w.r.t. z inside its own block; its "
        "images of largest curvature (often misclassified ones) decide it",
    )
)
METRICS.add(
    Metric(
        "image_purity_mean",
        "image purity, mean",
        _image_view("mean"),
        chance=BlockLayout.chance,
        help="each image's own-block share of its own |Hessian|, averaged over the class's images",
    )
)
METRICS.add(
    Metric(
        "image_purity_median",
        "image purity, median",
        _image_view("median"),
        chance=BlockLayout.chance,
        help="the median image's own-block share of its own |Hessian|",
    )
)
METRICS.add(
    Metric(
        "image_purity_at_least_half",
        "images with purity >= 0.5",
        _image_view("share_at_least_half"),
        chance=lambda layout: float(layout.chance() >= 0.5),
        help="share of images keeping at least half their |Hessian| in their own block (curvature "
        "spread evenly keeps (n/d)^2 < 0.5 there, so chance is 0)",
    )
)
METRICS.add(
    Metric(
        "loss_block_sensitivity",
        "own-block loss sensitivity",
        _loss_block_sensitivity,
        chance=lambda layout: 1 / layout.num_classes,
        help=f"share of images whose loss changes more when their own block moves than when any "
        f"other block moves by the same amount ({LOSS_STEP} of the latents' mean std per dim)",
    )
)
METRICS.add(
    Metric(
        "attribution_alignment",
        "latent attribution alignment",
        lambda ev: (
            None
            if ev.latent_attribution is None
            else _from_dict(
                attribution_alignment(ev.latent_attribution, ev.y, ev.layout),
                "attribution_alignment",
            )
        ),
        chance=lambda layout: layout.dims_per_class / layout.latent_dim,
        constant=_block_head_no_shared,
        help="share of the true-class logit's latent attribution inside the class's block",
    )
)
METRICS.add(
    Metric(
        "sweep_specificity",
        "sweep specificity",
        lambda ev: _from_dict(
            sweep_specificity(block_sweep_effect(ev.model, ev.z, ev.y, ev.layout, ev.std)),
            "sweep_specificity",
        ),
        chance=lambda layout: 1 / layout.num_classes,
        constant=_block_head,
        help="how much sweeping a class's block moves that class's logit rather than the others",
    )
)
METRICS.add(
    Metric(
        "image_sweep_specificity",
        "image sweep specificity",
        _image_sweep_specificity,
        chance=lambda layout: 1 / layout.num_classes,
        help="share of a class's decoded image change made by its own block (decoder runs)",
    )
)

METRICS.add(
    Metric(
        "concept_purity",
        "concept purity (activation AUC)",
        lambda ev: _from_dict(
            concept_purity(block_energy(ev.z, ev.layout), ev.y), "concept_purity"
        ),
        chance=lambda layout: 0.5,
        help="Concept Whitening's measure, classes as concepts: per class, the one-vs-rest AUC of "
        "its block's activation energy (standardised dims, squared, summed) on held-out images",
    )
)
METRICS.add(
    Metric(
        "concept_purity_hessian",
        "concept purity (Hessian AUC)",
        lambda ev: (
            None
            if ev.purity.block_shares is None
            else _from_dict(
                concept_purity(ev.purity.block_shares, ev.purity.labels), "concept_purity"
            )
        ),
        chance=lambda layout: 0.5,
        help="per class, the one-vs-rest AUC of the share of each image's loss |Hessian| inside "
        "the class's block",
    )
)

METRICS.add(
    Metric(
        "decoder_off_diagonal",
        "decoder curvature off the diagonal",
        lambda ev: (
            None
            if ev.decoder_curvature is None
            else Score(ev.decoder_curvature.off_diagonal, [math.nan] * ev.layout.num_classes)
        ),
        chance=lambda layout: 1 - 1 / layout.latent_dim,
        higher_is_better=False,
        help="share of the decoder's mean |Hessian| of the reconstruction loss w.r.t. z off its "
        "diagonal, exact, on the first test images (0: each dim's curvature is its own; decoder "
        "runs)",
    )
)


def _factor_metric(key: str) -> Callable[[Evidence], Score | None]:
    def compute(ev: Evidence) -> Score | None:
        scores = ev.factor_scores
        return None if scores is None else Score(scores[key], [math.nan] * ev.layout.num_classes)

    return compute


for _key, _label, _help in [
    (
        "mig",
        "MIG",
        "mutual information gap: per factor, the gap between the two latent dims most informative "
        "about it, over its entropy, averaged (Chen et al. 2018)",
    ),
    (
        "dci_disentanglement",
        "DCI disentanglement",
        "how much each dim's importance (random-forest regressors) concentrates on one factor "
        "(Eastwood and Williams 2018)",
    ),
    ("dci_completeness", "DCI completeness", "how much each factor is captured by one dim"),
    (
        "dci_informativeness",
        "DCI informativeness",
        "the forests' mean test R^2 predicting the factors",
    ),
    (
        "sap",
        "SAP",
        "separated attribute predictability: per factor, the gap between the two dims that predict "
        "it best (Kumar et al. 2018)",
    ),
]:
    METRICS.add(
        Metric(
            _key,
            _label,
            _factor_metric(_key),
            help=f"{_help}; on the first {FACTOR_SAMPLES} test images, "
            "against the data set's factors and the class (data with recorded factors only)",
        )
    )
