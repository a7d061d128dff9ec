"""The report: index.html and class_<k>.html for one run, or two side by side, with their figures.

Links are relative, so a report folder can be zipped and opened from file://. No page writer reads a
run folder: everything it shows comes in its arguments. The single-command pages are in
command_pages.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.scores import METRICS
from ..analysis.scores import metrics as registered_metrics
from . import figures
from .figure_views import (
    dim_sweep_figures,
    grid_figure,
    layout_view,
    picture_figures,
    relative_link,
)
from .html import render

if TYPE_CHECKING:
    from ..analysis.runs import RunAnalysis


def _metric_rows(analyses: list[RunAnalysis]) -> list[dict]:
    """The registered metrics that apply to at least one of the runs (measured, or fixed by
    construction): key, label, help, chance, direction."""
    layout = analyses[0].layout
    return [
        {
            "key": m.name,
            "label": m.label,
            "help": m.help,
            "chance": m.chance_level(layout),
            "better": "higher" if m.higher_is_better else "lower",
        }
        for m in registered_metrics()
        if any(m.name in a.scores or m.name in a.constant for a in analyses)
    ]


def _carrier_view(a: RunAnalysis, c: int, folder: Path, tag: str) -> dict | None:
    """The images that carry class ``c``'s curvature: a picture strip and one table row per
    image."""
    car = a.carriers.get(c)
    if car is None or not car.index:
        return None
    names = a.class_names
    rows = [
        {
            "rank": i + 1,
            "index": car.index[i],
            "label": names[car.labels[i]],
            "prediction": names[car.predictions[i]],
            "correct": car.labels[i] == car.predictions[i],
            "confidence": car.confidence[i],
            "own_share": car.own_share[i],
            "mass_share": car.mass_share[i],
        }
        for i in range(len(car.index))
    ]
    captions = [
        f"#{r['index']} {'ok' if r['correct'] else 'as ' + r['prediction']}\nconf "
        f"{r['confidence']:.2f}\nown {r['own_share']:.2f}\nmass {r['mass_share']:.0%}"
        for r in rows
    ]
    strip = figures.carrier_strip(
        car.images,
        captions,
        f"class {names[c]}: images of largest |H| mass",
        folder / f"{tag}carriers_{c}.png",
    )
    return {
        "figure": relative_link(folder)(strip),
        "rows": rows,
        "holders": car.holders,
        "measured": car.measured,
        "top_share": sum(car.mass_share),
    }


def _purity_figures(a: RunAnalysis, c: int, folder: Path, tag: str) -> dict:
    """Class ``c``'s mean-|H| heatmap (None when the run kept no Hessian) and its per-image purity
    histogram, with how purity was measured."""
    rel, name = relative_link(folder), a.class_names[c]
    shares = a.purity.per_image[a.purity.labels == c]
    return {
        "hessian": None
        if a.purity.hbar is None
        else rel(
            figures.hessian_heatmap(
                a.purity.hbar[c],
                a.layout,
                c,
                f"mean |H|, class {name}",
                folder / f"{tag}hessian_{c}.png",
            )
        ),
        "purity_method": a.purity.method,
        "purity_samples": len(a.purity.labels),
        "histogram": rel(
            figures.purity_histogram(
                shares,
                a.layout.chance(),
                float(a.purity.per_class[c]),
                f"per-image purity, class {name} ({len(shares)} images)",
                folder / f"{tag}purity_hist_{c}.png",
            )
        ),
    }


def _block_effect_view(a: RunAnalysis, c: int, folder: Path, tag: str) -> dict | None:
    """Which block moves class ``c``'s images, and the share its own block moves; None when that was
    not measured for the class."""
    if a.block_effect is None or a.block_effect[c].isnan().any():
        return None
    figure = figures.block_effect_bars(
        a.block_effect[c],
        c,
        f"class {a.class_names[c]}: which block moves its images",
        folder / f"{tag}block_effect_{c}.png",
    )
    return {
        "figure": relative_link(folder)(figure),
        "own_share": a.scores["image_sweep_specificity"].per_class[c],
    }


def _example_figures(a: RunAnalysis, c: int, folder: Path, tag: str) -> dict:
    """Class ``c``'s input-attribution strip and the sweeps of its own dims on its example images
    (None and none for a class without examples)."""
    ex = a.examples.get(c)
    if ex is None:
        return {"attribution": None, "sweeps": []}
    rel, name = relative_link(folder), a.class_names[c]
    attribution = rel(
        figures.attribution_overlays(
            ex.images,
            ex.maps,
            f"{a.method}, class {name}",
            folder / f"{tag}attribution_{c}.png",
        )
    )
    sweeps = [
        dim_sweep_figures(
            ex.sweep,
            i,
            a.class_names,
            c,
            f"class {name}, own dim {d}",
            (folder / f"{tag}sweep_{c}_{d}_img.png", folder / f"{tag}sweep_{c}_{d}_p.png"),
            rel,
        )
        for i, d in enumerate(ex.sweep["dims"])
    ]
    return {"attribution": attribution, "sweeps": sweeps}


def _class_figures(a: RunAnalysis, c: int, folder: Path, tag: str) -> dict:
    """Everything run ``a`` shows on class ``c``'s page, its figures drawn into ``folder``."""
    rel, name = relative_link(folder), a.class_names[c]
    kinds = {d: " (shared)" for d in a.layout.shared.tolist()}
    page = {
        **_purity_figures(a, c, folder, tag),
        "carriers": _carrier_view(a, c, folder, tag),
        "robustness": None
        if a.robustness is None
        else rel(
            figures.robustness_curves(
                a.robustness,
                c,
                f"robust accuracy, class {name}",
                folder / f"{tag}robustness_{c}.png",
            )
        ),
        "block_effect": _block_effect_view(a, c, folder, tag),
        "pictures": None
        if c not in a.pictures
        else picture_figures(a.pictures[c], name, kinds, f"{tag}pictures_{c}_", folder),
    }
    return {**page, **_example_figures(a, c, folder, tag)}


def _decoder_hessian_view(a: RunAnalysis, folder: Path, tag: str) -> dict | None:
    """The decoder's mean-|H| heatmap and its off-diagonal share beside chance; None for a run
    without decoder curvature."""
    dc = a.decoder_curvature
    if dc is None:
        return None
    figure = figures.decoder_hessian_heatmap(
        dc.hbar,
        a.layout,
        "decoder: mean |H| of the reconstruction loss",
        folder / f"{tag}decoder_hessian.png",
    )
    return {
        "figure": relative_link(folder)(figure),
        "off_diagonal": a.scores["decoder_off_diagonal"].overall,
        "chance": METRICS.get("decoder_off_diagonal").chance_level(a.layout),
        "samples": dc.samples,
    }


def _run_figures(
    a: RunAnalysis, folder: Path, tag: str, drawn: list[int], class_pages: bool = True
) -> dict:
    """Draw one run's figures into ``folder``; returns their paths relative to the report root."""
    rel = relative_link(folder)
    return {
        "curves": rel(figures.training_curves(a.history, folder / f"{tag}curves.png", a.name)),
        "latent": rel(
            figures.class_dim_matrix(
                a.latent_matrix,
                a.layout,
                a.class_names,
                f"mean |{a.method}| of the true-class logit",
                folder / f"{tag}latent_attribution.png",
            )
        ),
        "mi": rel(
            figures.class_dim_matrix(
                a.mutual_information,
                a.layout,
                a.class_names,
                "mutual information I(z_j; y = c)",
                folder / f"{tag}mutual_information.png",
            )
        ),
        "embedding": rel(
            figures.embedding_scatter(
                a.embedding,
                a.labels,
                a.class_names,
                "PCA of test latents",
                folder / f"{tag}embedding.png",
            )
        ),
        "grid": None
        if a.grid is None
        else grid_figure(a.grid, folder / f"{tag}latent_grid.png", rel),
        "robustness": None
        if a.robustness is None
        else rel(
            figures.robustness_curves(
                a.robustness, None, "robust accuracy, all classes", folder / f"{tag}robustness.png"
            )
        ),
        "decoder_hessian": _decoder_hessian_view(a, folder, tag),
        "classes": {c: _class_figures(a, c, folder, tag) for c in drawn} if class_pages else {},
    }


def write_report(analyses: list[RunAnalysis], out_dir: Path) -> Path:
    """index.html and class_<k>.html for one run, or two side by side; returns index.html."""
    folder = out_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    names = analyses[0].class_names
    nan = [float("nan")] * len(names)
    metrics = _metric_rows(analyses)
    class_pages = any(a.class_pages for a in analyses)
    drawn = sorted({c for a in analyses for c in a.examples}) if class_pages else []
    runs = [
        {
            "name": a.name,
            "config": a.config,
            "summary": a.summary,
            "figures": _run_figures(a, folder, f"run{i}_", drawn, class_pages),
            **layout_view(a.layout),
            "metrics": {m["key"]: a.metrics().get(m["key"], float("nan")) for m in metrics},
            "per_class": {m["key"]: a.metrics_per_class().get(m["key"], nan) for m in metrics},
            "errors": a.metric_errors(),
            "constant": a.constant,
            "collapse": a.collapse,
            "holders": {c: (car.holders, car.measured) for c, car in a.carriers.items()},
        }
        for i, a in enumerate(analyses)
    ]
    constant = {key: why for a in analyses for key, why in a.constant.items()}
    # a report folder reused: no page of a class not drawn now
    for old in out_dir.glob("class_*.html"):
        if old.stem.removeprefix("class_") not in {str(c) for c in drawn}:
            old.unlink()
    for c in drawn:
        render(
            "class.html",
            out_dir / f"class_{c}.html",
            runs=runs,
            c=c,
            name=names[c],
            class_names=names,
            metrics=metrics,
            constant=constant,
        )
    purity = analyses[0].purity.per_class
    order = sorted(
        range(len(names)),
        key=lambda c: (purity[c].isnan().item(), float(purity[c].nan_to_num(2.0))),
    )
    return render(
        "index.html",
        out_dir / "index.html",
        runs=runs,
        class_names=names,
        metrics=metrics,
        robustness_page=(out_dir / "robustness.html").is_file(),
        class_pages=class_pages,
        constant=constant,
        drawn=drawn,
        order=order,
    )
