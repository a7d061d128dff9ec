"""One class of a run, for the sweep and attribute commands: its dims swept (class probabilities,
and images through the run's decoder or a post-hoc one) and its input and latent attributions."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..metrics import attribution_alignment, sweep_specificity
from ..registry import HerdError
from ..run import Run
from .attribution import attribute, class_latent_attribution
from .latents import collect
from .posthoc import posthoc_decoder
from .sweep import SPAN, STEPS, block_sweep_effect, exemplars, sweep, sweep_change


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
    span: float = SPAN,
    steps: int = STEPS,
    count: int = 10,
    test: dict | None = None,
    progress=None,
) -> ImageSweeps:
    """Exemplar rows and decoded sweeps for class ``target``'s block and the shared dims; runs
    without a decoder use the post-hoc one (fitted and cached in the run folder on first use).

    ``test``: the output of ``collect(run.model, run.data("test"))``, if already at hand.

    >>> pictures = image_sweeps(load_run(), 3)
    >>> # then draw them: herd_cls.report.sweep_figures.image_sweep(...)
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
    pull: Tensor | None = None  # (d,) how much each dim moves the class's probability

    def kind(self, dim: int) -> str:
        """'own' (the class's block), 'shared' or 'other'."""
        return "own" if dim in self.block else "shared" if dim in self.shared else "other"


def sweep_class(
    run: Run,
    target: int,
    dims: list[int],
    samples: int = 8,
    span: float = SPAN,
    steps: int = STEPS,
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
    everything = range(layout.latent_dim)
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
        sweep_change(run.model, chosen, everything, std, span, steps, True)[:, target],
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
