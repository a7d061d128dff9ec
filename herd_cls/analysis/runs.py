"""The analysis of a whole run for the report: data in, typed results out (only herd_cls.report
draws). One class's views for the sweep and attribute commands are in class_views.py, attacks in
run_attacks.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from ..data import dataset_factors
from ..layout import BlockLayout
from ..metrics import embedding_2d, latent_label_information
from ..purity import Purity, measure_purity
from ..run import Run
from .attribution import attribute, class_latent_attribution
from .class_views import ImageSweeps, image_sweeps
from .decoder import DecoderCurvature, LatentGrid, latent_grid
from .latents import collect, evaluating
from .scores import METRICS, Evidence, Score, constant_metrics, score_all
from .sweep import sweep


@dataclass
class ClassExamples:
    """A few test images of one class: images (S, C, H, W), attribution maps (S, C, H, W) and the
    sweep of the class's own dims (see :func:`herd_cls.analysis.sweep.sweep`)."""

    images: Tensor
    maps: Tensor
    sweep: dict


CARRIERS = 8  # images per class page that carry the most curvature
DRAWN_CLASSES = 10  # class pages drawn by default: the classes of lowest class-mean purity


def classes_meaningful(config: dict) -> bool:
    """Whether per-class pages say something about the run: not for universal HeRD, which uses no
    labels and shapes no class blocks."""
    from ..regularizers import reg_names

    return "universal" not in reg_names(config.get("reg", "none"))


@dataclass
class Carriers:
    """The test images of one class that carry most of its curvature, largest mass first: images (k,
    C, H, W), their indices in the test split, labels, predictions, confidence (the predicted
    class's probability), own-block share of their own |H| and share of the class's total mass.
    ``holders``: how many of the class's ``measured`` images hold 90% of its mass."""

    images: Tensor
    index: list[int]
    labels: list[int]
    predictions: list[int]
    confidence: list[float]
    own_share: list[float]
    mass_share: list[float]
    holders: int | None
    measured: int


def carriers(
    purity: Purity,
    x: Tensor,
    logits: Tensor,
    c: int,
    k: int = CARRIERS,
    measured: Tensor | None = None,
) -> Carriers:
    """Class ``c``'s ``k`` images of largest curvature mass, of the test images ``x`` with their
    ``logits``;
    ``measured``: the test indices of purity's images, in its order (default: purity's image i is
        x[i])."""
    idx = purity.top_mass(c, k)
    test = idx if measured is None else measured[idx]
    probs = logits[test].softmax(1)
    share = purity.mass_share()
    return Carriers(
        x[test],
        test.tolist(),
        purity.labels[idx].tolist(),
        probs.argmax(1).tolist(),
        probs.max(1).values.tolist(),
        purity.per_image[idx].tolist(),
        share[idx].tolist(),
        purity.mass_holders(c, 0.9),
        int((purity.labels == c).sum()),
    )


@dataclass
class RunAnalysis:
    """Everything a report shows about one run. Per-class lists have one entry per class."""

    name: str
    config: dict
    summary: dict
    history: list[dict]
    robustness: dict | None
    class_names: list[str]
    layout: BlockLayout
    purity: Purity
    embedding: Tensor  # (N, 2) PCA of the test latents
    labels: Tensor  # (N,)
    latent_matrix: Tensor  # (K, d) mean |attribution| of the true-class logit
    mutual_information: Tensor  # (K, d) I(z_j; y = c)
    method: str
    # every metric of herd_cls.analysis.scores.METRICS that applies to the run
    scores: dict[str, Score]
    examples: dict[int, ClassExamples] = field(default_factory=dict)
    pictures: dict[int, ImageSweeps] = field(default_factory=dict)
    grid: LatentGrid | None = None  # every dim swept through the run's decoder; None without one
    # metric name -> why its value is fixed by construction
    constant: dict[str, str] = field(default_factory=dict)
    carriers: dict[int, Carriers] = field(default_factory=dict)
    # decoder runs only: the heatmap's mean |H|; its off-diagonal share is a score
    decoder_curvature: DecoderCurvature | None = None
    # (K, K) decoder runs: row c, each block's sweep's change of class c's images
    block_effect: Tensor | None = None
    class_pages: bool = True  # False where classes say nothing about the run (universal HeRD)

    @property
    def collapse(self) -> list[str]:
        """Reasons training gave for a collapsed decoder (summary.json's "decoder_collapse"); [] if
        none."""
        reasons = self.summary.get("decoder_collapse") or []
        return [reasons] if isinstance(reasons, str) else list(reasons)

    def metrics(self) -> dict[str, float]:
        """Each applicable metric's overall value, keyed by its registry name."""
        return {name: s.overall for name, s in self.scores.items()}

    def metric_errors(self) -> dict[str, float]:
        """The standard error of each metric that states one (see :class:`Score`)."""
        return {name: s.error for name, s in self.scores.items() if s.error is not None}

    def metrics_per_class(self) -> dict[str, list[float]]:
        return {name: s.per_class for name, s in self.scores.items()}


def worst_classes(purity: Purity, count: int = DRAWN_CLASSES) -> list[int]:
    """The ``count`` classes of lowest class-mean purity, worst first (classes not measured
    last)."""
    order = sorted(
        range(len(purity.per_class)),
        key=lambda c: (
            purity.per_class[c].isnan().item(),
            float(purity.per_class[c].nan_to_num(2.0)),
        ),
    )
    return order[:count]


def round_robin(labels: Tensor) -> Tensor:
    """Indices (N,) of ``labels`` (N,) ordered by rank within their class: every class's first
    image, then every class's second, ...; so any prefix spreads over the classes (test splits of
    image folders are class-major)."""
    order = labels.argsort(stable=True)
    counts = torch.bincount(labels)
    rank = torch.arange(len(labels)) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return order[(rank * len(counts) + labels[order]).argsort()]


def analyse(
    run: Run,
    method: str = "integrated-gradients",
    per_class: int = 4,
    hessian_samples: int = 512,
    classes: list[int] | None = None,
) -> RunAnalysis:
    """Block purity (both views, on ``hessian_samples`` test images or 2 per class if more, spread
    over the classes), every registered metric, latent attributions, latent-label mutual
    information, a PCA embedding, and, for the classes whose pages are drawn, input attributions and
    own-block sweeps of ``per_class`` test images. ``classes``: those classes (None: the
    :data:`DRAWN_CLASSES` worst by class-mean purity; none for a run whose classes mean nothing)."""
    model, cfg, names, layout = run.model, run.config, run.class_names, run.layout
    data = collect(model, run.data("test"))
    x, z, y = data["x"], data["z"], data["y"]
    std = z.std(0)
    # every class, however the split is ordered
    measured = round_robin(y)[: max(hessian_samples, 2 * len(names))]
    purity = measure_purity(
        model, zip(x[measured].split(128), y[measured].split(128)), layout, cfg.wrt, cfg.recon_loss
    )
    latent = class_latent_attribution(model.classify, z, y, len(names), method)
    config = run.config_dict()
    evidence = _evidence(run, data, purity, latent["per_sample"], config)
    if not classes_meaningful(config):
        classes = []
    drawn = worst_classes(purity) if classes is None else classes
    chosen = {c: (y == c).nonzero().flatten()[:per_class] for c in drawn}
    chosen = {c: idx for c, idx in chosen.items() if len(idx)}
    examples = _class_examples(model, data, layout, chosen, method, std)
    pictures = {c: image_sweeps(run, c, test=data) for c in chosen}
    decoder = run.decode is not None
    return RunAnalysis(
        name=run.path.name,
        config=config,
        summary=run.summary,
        history=run.history(),
        robustness=run.robustness(),
        class_names=names,
        layout=layout,
        purity=purity,
        embedding=embedding_2d(z, "pca"),
        labels=y,
        latent_matrix=latent["matrix"],
        mutual_information=torch.tensor(latent_label_information(z, y, len(names))["mi_class"]),
        method=method,
        scores=score_all(evidence),
        block_effect=evidence.image_block_effect,
        examples=examples,
        pictures=pictures,
        grid=latent_grid(run, test=data) if decoder else None,
        constant=constant_metrics(config),
        carriers={c: carriers(purity, x, data["logits"], c, measured=measured) for c in chosen},
        decoder_curvature=evidence.decoder_curvature,
        class_pages=classes_meaningful(config),
    )


@dataclass
class SplitScores:
    """Registry metrics measured on every test image of a run: ``scores`` (name -> Score, None where
    the metric does not apply), the ``purity`` they read and the ``test`` split (``collect``'s x, z,
    y, logits)."""

    scores: dict[str, Score | None]
    purity: Purity
    test: dict


def score_test_split(
    run: Run, names: Sequence[str], hessian_method: str = "auto", batch_size: int = 256
) -> SplitScores:
    """The registered metrics ``names`` on every test image of ``run``, purity from the |H| of the
    classifier's loss (whatever the run's ``--wrt``) by ``hessian_method``. No latent attribution is
    computed, so a metric that reads it comes back None."""
    model = run.model
    with evaluating(model):
        test = collect(model, run.data("test"), batch_size)
        batches = zip(test["x"].split(batch_size), test["y"].split(batch_size))
        purity = measure_purity(model, batches, run.layout, hessian_method=hessian_method)
        evidence = _evidence(run, test, purity, None, run.config_dict())
        return SplitScores({n: METRICS.get(n).compute(evidence) for n in names}, purity, test)


def _evidence(
    run: Run, test: dict, purity: Purity, latent_attribution: Tensor | None, config: dict
) -> Evidence:
    """What the metrics read: the test split ``test`` (see ``collect``) with its purity and latent
    attribution (N, d), the run's config and the test images' factors."""
    return Evidence(
        run.model,
        run.layout,
        test["x"],
        test["z"],
        test["y"],
        test["logits"],
        purity,
        latent_attribution,
        config,
        dataset_factors(run.data("test")) or None,
    )


def _class_examples(
    model, test: dict, layout: BlockLayout, chosen: dict[int, Tensor], method: str, std: Tensor
) -> dict[int, ClassExamples]:
    """Input attributions and own-block sweeps (``std``: (d,) the latents' spread) of the ``chosen``
    test images of each class: class -> indices (S,) into the test split ``test``."""
    x, z, y = test["x"], test["z"], test["y"]
    maps = (
        attribute(
            model,
            x[torch.cat(list(chosen.values()))],
            y[torch.cat(list(chosen.values()))],
            method,
            batch_size=32,
        ).split([len(i) for i in chosen.values()])
        if chosen
        else []
    )
    return {
        c: ClassExamples(x[idx], m, sweep(model, z[idx], layout.block(c).tolist(), std))
        for (c, idx), m in zip(chosen.items(), maps)
    }
