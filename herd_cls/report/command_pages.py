"""The pages of the single-analysis commands: sweep_grid.html and sweep_class_<C>.html (sweep),
attribute.html (attribute) and robustness.html (robustness).

Like the report, each page links its figures relatively and reads no run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis.sanity import masking_signs
from ..layout import BlockLayout
from . import figure_views as views
from . import figures, sweep_figures
from .html import render

if TYPE_CHECKING:
    from ..analysis.decoder import LatentGrid
    from ..analysis.class_views import AttributionResult, ClassSweep


def write_grid_page(run_name: str, grid: LatentGrid, span: float, out_dir: Path) -> Path:
    """sweep_grid.html: every latent dim swept on a few test images, drawn by the run's decoder."""
    folder = out_dir / "sweep_grid"
    folder.mkdir(parents=True, exist_ok=True)
    return render(
        "grid.html",
        out_dir / "sweep_grid.html",
        run_name=run_name,
        span=span,
        grid=views.grid_figure(grid, folder / "grid.png", views.relative_link(folder)),
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
            **views.dim_sweep_figures(
                sw.result,
                i,
                class_names,
                sw.target,
                f"class {name}, dim {d}{suffix[sw.kind(d)]}",
                (folder / f"dim{d}_images.png", folder / f"dim{d}_probs.png"),
                views.relative_link(folder),
            ),
            "index": d,
            "kind": sw.kind(d),
        }
        for i, d in enumerate(sw.dims)
    ]
    pull = (
        None
        if sw.pull is None
        else views.relative_link(folder)(
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
    pictures = views.picture_figures(sw.images, name, kinds, "pictures_dim", folder)
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
    rel = views.relative_link(folder)
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


def _robustness_run_view(
    name: str, layout: BlockLayout, res: dict, class_names: list[str], folder: Path, tag: str
) -> dict:
    """One run's part of robustness.html: its figures (drawn into ``folder``, file names starting
    with ``tag``), and the strongest attack at its middle eps, whose confusion is shown."""
    rel = views.relative_link(folder)
    # the last one asked for
    strongest = [a for a in res["attacks"] if not a.startswith("transfer-")][-1]
    eps_mid = sorted(res["attacks"][strongest], key=float)[len(res["attacks"][strongest]) // 2]
    return {
        "name": name,
        "result": res,
        "strongest": strongest,
        "eps_mid": eps_mid,
        "blocks": views.layout_view(layout)["blocks"],
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
        "masking_signs": masking_signs(res["checks"]),
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
    entries = [
        _robustness_run_view(name, layout, res, class_names, folder, f"run{i}_")
        for i, (name, layout, res) in enumerate(zip(names, layouts, results))
    ]
    return render(
        "robustness.html",
        out_dir / "robustness.html",
        runs=entries,
        class_names=class_names,
        attacks=_attack_legend(results),
    )
