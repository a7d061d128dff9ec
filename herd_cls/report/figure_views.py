"""Figures drawn and packed for a page, shared by the report and the single-command pages: the
relative link, the class blocks, a dim's sweep, the exemplar pictures and the latent grid."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..layout import BlockLayout
from . import sweep_figures

if TYPE_CHECKING:
    from ..analysis.decoder import LatentGrid
    from ..analysis.class_views import ImageSweeps


def relative_link(folder: Path):
    """A figure's path in ``folder`` as the page links it: relative to the report root."""
    return lambda p: f"{folder.name}/{p.name}"


def layout_view(layout: BlockLayout) -> dict:
    """Each class's block and the shared dims, as lists."""
    return {
        "blocks": [layout.block(c).tolist() for c in range(layout.num_classes)],
        "shared": layout.shared.tolist(),
    }


def dim_sweep_figures(
    sweep: dict,
    index: int,
    names: list[str],
    target: int,
    title: str,
    paths: tuple[Path, Path],
    rel,
) -> dict:
    """The image grid (with a decoder) and probability plot of dim ``sweep['dims'][index]``, drawn
    to ``paths`` = (grid, probabilities)."""
    grid = None
    if sweep["images"] is not None:
        grid = rel(
            sweep_figures.sweep_grid(sweep["images"][index], sweep["offsets"], title, paths[0])
        )
    probs = rel(
        sweep_figures.sweep_probabilities(
            sweep["probs"][index], sweep["offsets"], names, target, title, paths[1]
        )
    )
    return {"dim": sweep["dims"][index], "grid": grid, "probs": probs}


def picture_figures(
    pictures: ImageSweeps, class_name: str, kinds: dict[int, str], stem: str, folder: Path
) -> dict:
    """One exemplar-and-decoded-sweep figure per dim, and the caption of the decoder that drew
    them."""
    rel = relative_link(folder)
    dims = []
    for i, d in enumerate(pictures.dims):
        title = f"class {class_name}, dim {d}{kinds.get(d, '')}"
        path = sweep_figures.image_sweep(
            pictures.exemplars["images"][i],
            pictures.exemplars["values"][i],
            pictures.decoded["images"][i],
            pictures.decoded["offsets"],
            title,
            pictures.decoder,
            folder / f"{stem}{d}.png",
        )
        dims.append({"dim": d, "figure": rel(path)})
    info = pictures.decoder_info
    caption = (
        pictures.decoder
        if info is None
        else (
            f"{pictures.decoder}, fitted on the frozen encoder's training latents (test MSE "
            f"{info['test_mse']:.4f}; the mean training image scores {info['mean_image_mse']:.4f})"
        )
    )
    return {"dims": dims, "decoder": caption}


def grid_figure(grid: LatentGrid, path: Path, rel) -> dict:
    """The latent grid's figure and its per-dim rows, for a page."""
    named = grid.factors or [None] * len(grid.dims)
    labels = [
        f"dim {d}" + (f" ({k})" if k else "") + (f"\n= {f[0]} ({f[1]:.2f})" if f else "")
        for d, k, f in zip(grid.dims, grid.kinds, named)
    ]
    figure = sweep_figures.latent_grid(
        grid.images, grid.offsets, labels, f"every latent dim, images from {grid.source}", path
    )
    return {
        "figure": rel(figure),
        "samples": grid.images.shape[2],
        "source": grid.source,
        "rows": [
            {
                "dim": d,
                "kind": k,
                "change": float(c),
                "factor": f[0] if f else None,
                "mi": f[1] if f else None,
            }
            for d, k, c, f in zip(grid.dims, grid.kinds, grid.change, named)
        ],
    }
