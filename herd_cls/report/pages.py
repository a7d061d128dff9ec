"""Page writers: analysis results in, HTML pages and PNG figures out.

Links are relative, so a report folder can be zipped and opened from file://. No page writer reads
a run folder: everything it shows comes in its arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.scores import metrics as registered_metrics
from ..layout import BlockLayout
from . import figures, sweep_figures
from .html import render

if TYPE_CHECKING:
    from ..analysis.decoder import LatentGrid
    from ..analysis.runs import AttributionResult, ClassSweep, ImageSweeps, RunAnalysis


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
        f"#{r['index']} {'ok' if r['correct'] else 'as ' + r['prediction']}\n"
        f"conf {r['confidence']:.2f}\nown {r['own_share']:.2f}\nmass {r['mass_share']:.0%}"
        for r in rows
    ]
    strip = figures.carrier_strip(
        car.images,
        captions,
        f"class {names[c]}: images of largest |H| mass",
        folder / f"{tag}carriers_{c}.png",
    )
    return {
        "figure": _rel(folder)(strip),
        "rows": rows,
        "holders": car.holders,
        "measured": car.measured,
        "top_share": sum(car.mass_share),
    }


def _layout_view(layout: BlockLayout) -> dict:
    return {
        "blocks": [layout.block(c).tolist() for c in range(layout.num_classes)],
        "shared": layout.shared.tolist(),
    }


def _rel(folder: Path):
    return lambda p: f"{folder.name}/{p.name}"


def _sweep_figures(
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


def _picture_figures(
    pictures: ImageSweeps, class_name: str, kinds: dict[int, str], stem: str, folder: Path
) -> dict:
    """One exemplar-and-decoded-sweep figure per dim, and the caption of the decoder that drew
    them."""
    rel = _rel(folder)
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
            f"{info['test_mse']:.4f}; "
            f"the mean training image scores {info['mean_image_mse']:.4f})"
        )
    )
    return {"dims": dims, "decoder": caption}


def _class_figures(a: RunAnalysis, c: int, folder: Path, tag: str) -> dict:
    rel, name = _rel(folder), a.class_names[c]
    kinds = {d: " (shared)" for d in a.layout.shared.tolist()}
    shares = a.purity.per_image[a.purity.labels == c]
    page = {
        "attribution": None,
        "sweeps": [],
        "robustness": None,
        "pictures": None,
        "block_effect": None,
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
        "carriers": _carrier_view(a, c, folder, tag),
    }
    if a.robustness is not None:
        page["robustness"] = rel(
            figures.robustness_curves(
                a.robustness,
                c,
                f"robust accuracy, class {name}",
                folder / f"{tag}robustness_{c}.png",
            )
        )
    if a.block_effect is not None and not a.block_effect[c].isnan().any():
        page["block_effect"] = {
            "figure": rel(
                figures.block_effect_bars(
                    a.block_effect[c],
                    c,
                    f"class {name}: which block moves its images",
                    folder / f"{tag}block_effect_{c}.png",
                )
            ),
            "own_share": a.scores["image_sweep_specificity"].per_class[c],
        }
    if c in a.pictures:
        page["pictures"] = _picture_figures(
            a.pictures[c], name, kinds, f"{tag}pictures_{c}_", folder
        )
    ex = a.examples.get(c)
    if ex is not None:
        page["attribution"] = rel(
            figures.attribution_overlays(
                ex.images,
                ex.maps,
                f"{a.method}, class {name}",
                folder / f"{tag}attribution_{c}.png",
            )
        )
        page["sweeps"] = [
            _sweep_figures(
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
    return page


def _run_figures(
    a: RunAnalysis, folder: Path, tag: str, drawn: list[int], class_pages: bool = True
) -> dict:
    """Draw one run's figures into ``folder``; returns their paths relative to the report root."""
    rel = _rel(folder)
    out = {
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
        "decoder_hessian": None,
    }
    dc = a.decoder_curvature
    if dc is not None:
        out["decoder_hessian"] = {
            "figure": rel(
                figures.decoder_hessian_heatmap(
                    dc.hbar,
                    a.layout,
                    "decoder: mean |H| of the reconstruction loss",
                    folder / f"{tag}decoder_hessian.png",
                )
            ),
            "off_diagonal": dc.off_diagonal,
            "chance": 1 - 1 / a.layout.latent_dim,
            "samples": dc.samples,
        }
    out["classes"] = {c: _class_figures(a, c, folder, tag) for c in drawn} if class_pages else {}
    return out


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
            **_layout_view(a.layout),
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
    for old in out_dir.glob(
        "class_*.html"
    ):  # a report folder reused: no page of a class not drawn now
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


def write_grid_page(run_name: str, grid: LatentGrid, span: float, out_dir: Path) -> Path:
    """sweep_grid.html: every latent dim swept on a few test images, drawn by the run's decoder."""
    folder = out_dir / "sweep_grid"
    folder.mkdir(parents=True, exist_ok=True)
    return render(
        "grid.html",
        out_dir / "sweep_grid.html",
        run_name=run_name,
        span=span,
        grid=grid_figure(grid, folder / "grid.png", _rel(folder)),
    )


def write_sweep_page(
    run_name: str, class_names: list[str], layout: BlockLayout, sw: ClassSweep, out_dir: Path
) -> Path:
    """sweep_class_<C>.html: every dim's pull on the class in one figure, then an image grid (with a
    decoder) and a probability plot per swept dim."""
    folder = out_dir / f"sweep_class_{sw.target}"
    folder.mkdir(parents=True, exist_ok=True)
    name = class_names[sw.target]
    suffix = {"own": " (class block)", "shared": " (shared)", "other": ""}
    dims = [
        {
            **_sweep_figures(
                sw.result,
                i,
                class_names,
                sw.target,
                f"class {name}, dim {d}{suffix[sw.kind(d)]}",
                (folder / f"dim{d}_images.png", folder / f"dim{d}_probs.png"),
                _rel(folder),
            ),
            "index": d,
            "kind": sw.kind(d),
        }
        for i, d in enumerate(sw.dims)
    ]
    pull = (
        None
        if sw.pull is None
        else _rel(folder)(
            sweep_figures.dim_pull_bars(
                sw.pull,
                layout,
                sw.target,
                f"every dim's pull on class {name} (red: its block, blue: shared)",
                folder / "pull.png",
            )
        )
    )
    kinds = {d: suffix[sw.kind(d)] for d in sw.images.dims}
    pictures = _picture_figures(sw.images, name, kinds, "pictures_dim", folder)
    return render(
        "sweep.html",
        out_dir / f"sweep_class_{sw.target}.html",
        run_name=run_name,
        pictures=pictures,
        class_index=sw.target,
        class_name=name,
        samples=sw.samples,
        span=sw.span,
        steps=sw.steps,
        has_decoder=sw.result["images"] is not None,
        block=sw.block,
        shared=sw.shared,
        dims=dims,
        pull=pull,
        pull_dims=layout.latent_dim,
        specificity=sw.specificity["sweep_specificity_per_class"][sw.target],
        chance=1 / len(class_names),
    )


def write_attribution_page(
    run_name: str,
    class_names: list[str],
    layout: BlockLayout,
    res: AttributionResult,
    out_dir: Path,
) -> Path:
    """attribute.html: the class x latent-dim matrix and input-attribution strips per class."""
    folder = out_dir / "attribution"
    folder.mkdir(parents=True, exist_ok=True)
    rel = _rel(folder)
    matrix = figures.class_dim_matrix(
        res.matrix,
        layout,
        class_names,
        f"mean |{res.method}| of the true-class logit",
        folder / f"latent_{res.method}.png",
    )
    classes = [
        {
            "index": c,
            "name": class_names[c],
            "block": layout.block(c).tolist(),
            "alignment": res.alignment["attribution_alignment_per_class"][c],
            "figure": rel(
                figures.attribution_overlays(
                    res.images[c],
                    res.maps[c],
                    f"{res.method}, class {class_names[c]}",
                    folder / f"class{c}_{res.method}.png",
                )
            ),
        }
        for c in res.images
    ]
    return render(
        "attribute.html",
        out_dir / "attribute.html",
        run_name=run_name,
        method=res.method,
        matrix=rel(matrix),
        alignment=res.alignment["attribution_alignment"],
        chance=layout.dims_per_class / layout.latent_dim,
        classes=classes,
    )


def _attack_legend(results: list[dict]) -> list[dict]:
    """Every attack in ``results``, in order, with what its registry entry says (a name no longer
    registered gets dashes)."""
    from ..analysis.attacks import ATTACKS, TRANSFER

    legend = {}
    for name in (n for res in results for n in res["attacks"]):
        base = name.removeprefix(TRANSFER)
        attack = ATTACKS.get(base) if base in ATTACKS else None
        kind = (
            "–" if attack is None else "gradient-free" if attack.gradient_free else "gradient-based"
        )
        legend[name] = {
            "name": name,
            "norm": attack.norm if attack else "–",
            "help": attack.help if attack else "–",
            "kind": kind if name == base else f"transfer of {base} from another model",
        }
    return list(legend.values())


def write_robustness_page(
    names: list[str],
    layouts: list[BlockLayout],
    results: list[dict],
    class_names: list[str],
    out_dir: Path,
) -> Path:
    """robustness.html: the attacks (from their registry entries), overall and per-class accuracy
    against eps, confusion, latent shift, input-gradient norms and the gradient-masking checks.
    Every attack in ``results`` is shown, whichever it is.

    ``names``, ``layouts`` (each run's class blocks) and ``results`` have one entry per run."""
    folder = out_dir / "robustness"
    folder.mkdir(parents=True, exist_ok=True)
    rel = _rel(folder)
    entries = []
    for i, (name, layout, res) in enumerate(zip(names, layouts, results)):
        tag = f"run{i}_"
        # the last one asked for
        strongest = [a for a in res["attacks"] if not a.startswith("transfer-")][-1]
        eps_mid = sorted(res["attacks"][strongest], key=float)[len(res["attacks"][strongest]) // 2]
        entries.append(
            {
                "name": name,
                "result": res,
                "strongest": strongest,
                "eps_mid": eps_mid,
                "blocks": _layout_view(layout)["blocks"],
                "overall": rel(
                    figures.robustness_curves(
                        res, None, f"{name}: all classes", folder / f"{tag}overall.png"
                    )
                ),
                "gradients": rel(
                    figures.gradient_norm_curves(
                        res, f"{name}: input gradients", folder / f"{tag}gradients.png"
                    )
                ),
                "flagged": sum(not c["passed"] for c in res["checks"]),
                "confusion": rel(
                    figures.confusion_heatmap(
                        res["attacks"][strongest][eps_mid]["confusion"],
                        class_names,
                        f"{strongest}, eps {eps_mid}",
                        folder / f"{tag}confusion.png",
                    )
                ),
                "classes": [
                    rel(
                        figures.robustness_curves(
                            res, c, f"class {class_names[c]}", folder / f"{tag}class{c}.png"
                        )
                    )
                    for c in range(len(class_names))
                ],
            }
        )
    return render(
        "robustness.html",
        out_dir / "robustness.html",
        runs=entries,
        class_names=class_names,
        attacks=_attack_legend(results),
    )
