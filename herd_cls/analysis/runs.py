"""Analyses of a whole run for the commands: data in, typed results out (only herd_cls.report
draws)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..data import dataset_factors
from ..layout import BlockLayout
from ..metrics import (
    attribution_alignment,
    embedding_2d,
    latent_label_information,
    sweep_specificity,
)
from ..purity import Purity, measure_purity
from ..registry import HerdError
from ..run import Run
from .attribution import attribute, class_latent_attribution
from .decoder import DecoderCurvature, LatentGrid, decoder_curvature, latent_grid
from .latents import collect
from .posthoc import posthoc_decoder
from .scores import Evidence, Score, constant_metrics, score_all
from .sweep import block_sweep_effect, dim_pull, exemplars, sweep


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
    decoder_curvature: DecoderCurvature | None = None  # decoder runs only
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
    evidence = Evidence(
        model,
        layout,
        x,
        z,
        y,
        data["logits"],
        purity,
        latent["per_sample"],
        config,
        dataset_factors(run.data("test")) or None,
    )
    if not classes_meaningful(config):
        classes = []
    drawn = worst_classes(purity) if classes is None else classes
    chosen = {c: (y == c).nonzero().flatten()[:per_class] for c in drawn}
    chosen = {c: idx for c, idx in chosen.items() if len(idx)}
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
    examples = {
        c: ClassExamples(x[idx], m, sweep(model, z[idx], layout.block(c).tolist(), std))
        for (c, idx), m in zip(chosen.items(), maps)
    }
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
        decoder_curvature=decoder_curvature(model, x, z, cfg.recon_loss) if decoder else None,
        class_pages=classes_meaningful(config),
    )


@dataclass
class ImageSweeps:
    """What the dims of one class's block and the shared dims mean in pixels.

    exemplars: test images of the class ordered by each dim's value (see ``sweep.exemplars``).
    decoded: the dims swept on a few of the class's images and drawn by ``decoder`` (see
        ``sweep.sweep``).
    decoder: "trained decoder" or "post-hoc decoder"; decoder_info: the post-hoc decoder's test MSE
        etc.
    """

    target: int
    dims: list[int]
    exemplars: dict
    decoded: dict
    decoder: str
    decoder_info: dict | None


def image_sweeps(
    run: Run,
    target: int,
    samples: int = 3,
    span: float = 2.0,
    steps: int = 7,
    count: int = 10,
    test: dict | None = None,
    progress=None,
) -> ImageSweeps:
    """Exemplar rows and decoded sweeps for class ``target``'s block and the shared dims; runs
    without a decoder use the post-hoc one (fitted and cached in the run folder on first use).

    ``test``: the output of ``collect(run.model, run.data("test"))``, if already at hand.

    >>> pictures = image_sweeps(load_run(), 3)     # then
    herd_cls.report.sweep_figures.image_sweep(...)
    """
    test = test if test is not None else collect(run.model, run.data("test"))
    if run.decode is not None:
        decoder, name, info = run.decode, "trained decoder", None
    else:
        decoder, info = posthoc_decoder(run, progress)
        name = "post-hoc decoder"
    own = test["y"] == target
    if not own.any():
        raise HerdError(f"the test split has no image of class {target}; pick another class")
    dims = run.layout.block(target).tolist() + run.layout.shared.tolist()
    x, z = test["x"][own], test["z"][own]
    decoded = sweep(run.model, z[:samples], dims, test["z"].std(0), span, steps, decoder=decoder)
    return ImageSweeps(target, dims, exemplars(x, z, dims, count), decoded, name, info)


@dataclass
class ClassSweep:
    """Sweeps of some latent dims of ``samples`` test images of one class (see ``sweep`` for
    ``result``)."""

    target: int
    dims: list[int]
    block: list[int]
    shared: list[int]
    samples: int
    span: float
    steps: int
    result: dict
    specificity: dict
    images: ImageSweeps
    pull: Tensor | None = None  # (d,) every dim's pull on the class's probability (sweep.dim_pull)

    def kind(self, dim: int) -> str:
        """'own' (the class's block), 'shared' or 'other'."""
        return "own" if dim in self.block else "shared" if dim in self.shared else "other"


def sweep_class(
    run: Run,
    target: int,
    dims: list[int],
    samples: int = 8,
    span: float = 2.0,
    steps: int = 7,
    progress=None,
) -> ClassSweep:
    """Sweep ``dims`` of ``samples`` test images of class ``target`` (class probabilities, and
    images with a decoder), every class's block specificity, and :func:`image_sweeps` of the
    class."""
    if samples < 1 or steps < 2 or span <= 0:
        raise HerdError("--samples must be >= 1, --steps >= 2 and --range > 0")
    data = collect(run.model, run.data("test"))
    z, y = data["z"], data["y"]
    chosen = z[y == target][:samples]
    if len(chosen) == 0:
        raise HerdError(f"the test split has no image of class {target}; pick another class")
    std, layout = z.std(0), run.layout
    return ClassSweep(
        target,
        dims,
        layout.block(target).tolist(),
        layout.shared.tolist(),
        len(chosen),
        span,
        steps,
        sweep(run.model, chosen, dims, std, span, steps),
        sweep_specificity(block_sweep_effect(run.model, z, y, layout, std, span, steps)),
        image_sweeps(run, target, span=span, steps=steps, test=data, progress=progress),
        dim_pull(run.model, chosen, target, std, span, steps),
    )


@dataclass
class AttributionResult:
    """Latent attribution matrix (K, d) and alignment, and input attributions of a few images per
    class."""

    method: str
    matrix: Tensor
    alignment: dict
    images: dict[int, Tensor]
    maps: dict[int, Tensor]


def attribute_classes(
    run: Run, classes: list[int], method: str = "integrated-gradients", samples: int = 8
) -> AttributionResult:
    """Attributions of ``samples`` test images of each of ``classes``, plus the latent view of
    all."""
    if samples < 1:
        raise HerdError("--samples must be at least 1")
    data = collect(run.model, run.data("test"))
    x, z, y = data["x"], data["z"], data["y"]
    latent = class_latent_attribution(run.model.classify, z, y, len(run.class_names), method)
    images, maps = {}, {}
    for c in classes:
        idx = (y == c).nonzero().flatten()[:samples]
        if len(idx):
            images[c], maps[c] = x[idx], attribute(run.model, x[idx], y[idx], method, batch_size=32)
    return AttributionResult(
        method,
        latent["matrix"],
        attribution_alignment(latent["per_sample"], y, run.layout),
        images,
        maps,
    )


def balanced_test_batch(run: Run, n_samples: int) -> tuple[Tensor, Tensor]:
    """About ``n_samples`` test images (B, C, H, W) and labels (B,), the same number from every
    class."""
    from ..data import dataset_labels

    data = run.data("test")
    labels = torch.as_tensor(dataset_labels(data))
    per = max(1, n_samples // len(run.class_names))
    idx = (
        torch.cat([(labels == c).nonzero().flatten()[:per] for c in range(len(run.class_names))])
        .sort()
        .values
    )
    return torch.stack([data[int(i)][0] for i in idx]), labels[idx]


def attack_run(
    run: Run,
    attacks: list[str],
    eps: list[float],
    steps: int = 10,
    restarts: int = 1,
    n_samples: int = 200,
    queries: int = 1000,
    transfer_from: Run | None = None,
    transfer_attack: str = "pgd-linf",
    progress=None,
) -> dict:
    """Robust accuracy of one run per attack, eps and class, with latent displacement, gradient
    norms and sanity checks (see :func:`herd_cls.analysis.robustness.evaluate_robustness`); with
    ``transfer_from``, also ``transfer_attack`` crafted on that run's model. ``settings`` records
    the request."""
    from .attacks import Budget, check_attack_request
    from .robustness import evaluate_robustness

    budget = Budget(steps, restarts, queries, len(run.class_names))
    check_attack_request(
        attacks, eps, budget.num_classes, transfer_attack if transfer_from else None, budget
    )
    if n_samples < 1:
        raise HerdError("--n-samples must be at least 1")
    if transfer_from is not None:
        check_transfer_source(run, transfer_from)
    x, y = balanced_test_batch(run, n_samples)
    result = evaluate_robustness(
        run.classifier(),
        run.encode,
        x,
        y,
        run.layout,
        attacks,
        eps,
        steps,
        restarts,
        queries,
        transfer_from.classifier() if transfer_from else None,
        transfer_attack,
        progress=progress,
    )
    result["settings"] = {
        "attacks": attacks,
        "eps": eps,
        "steps": steps,
        "restarts": restarts,
        "queries": queries,
        "n_samples": len(y),
        "run": str(run.path),
        "transfer_from": str(transfer_from.path) if transfer_from else None,
        "transfer_attack": transfer_attack if transfer_from else None,
    }
    return result


def check_transfer_source(run: Run, source: Run) -> None:
    """A transfer source must read the same images and name the same classes as the attacked run."""
    ours, theirs = run.info, source.info
    if theirs.class_names != ours.class_names:
        raise HerdError(
            f"--transfer-from {source.path.name} has classes {theirs.class_names}, this run has "
            f"{ours.class_names}; craft transfer attacks on a run of the same data set"
        )
    if (theirs.in_chans, theirs.image_size) != (ours.in_chans, ours.image_size):
        raise HerdError(
            f"--transfer-from {source.path.name} takes {theirs.in_chans}x{theirs.image_size}x"
            f"{theirs.image_size} images, this run "
            f"{ours.in_chans}x{ours.image_size}x{ours.image_size}; "
            "train the source with the same --image-size"
        )
