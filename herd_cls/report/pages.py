"""The HTML report: index.html (config, curves, metrics, class table) and one page per class.

Given one analysis (from ``herd_cls.commands.analyse``) or two (``--compare``), figures are drawn
next to the pages and linked relatively, so the folder can be zipped and opened from file://.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from . import figures
from .html import render

METRICS = [("accuracy", "test accuracy"), ("block_purity", "Hessian block purity"),
           ("attribution_alignment", "latent attribution alignment"), ("sweep_specificity", "sweep specificity")]


def _run_figures(a: dict, folder: Path, tag: str) -> dict:
    """Draw one run's figures into ``folder``; returns their paths relative to the report root."""
    rel = lambda p: f"{folder.name}/{p.name}"  # noqa: E731
    names, blocks = a["class_names"], a["blocks"]
    rows = [json.loads(line) for line in (a["run"].path / "metrics.jsonl").read_text().splitlines()]
    out = {
        "curves": rel(figures.training_curves(rows, folder / f"{tag}curves.png", a["name"])),
        "latent": rel(figures.class_dim_matrix(a["latent_matrix"], blocks, names,
                                               f"mean |{a['method']}| of the true-class logit",
                                               folder / f"{tag}latent_attribution.png")),
        "mi": rel(figures.class_dim_matrix(torch.tensor(a["mi_class"]), blocks, names,
                                           "mutual information I(z_j; y = c)", folder / f"{tag}mutual_information.png")),
        "embedding": rel(figures.embedding_scatter(a["embedding"], a["y"], names, "PCA of test latents",
                                                   folder / f"{tag}embedding.png")),
        "classes": {},
    }
    robustness_file = a["run"].path / "robustness.json"
    robust = json.loads(robustness_file.read_text()) if robustness_file.is_file() else None
    out["robustness"] = None if robust is None else rel(figures.robustness_curves(
        robust, None, "robust accuracy, all classes", folder / f"{tag}robustness.png"))
    for c, name in enumerate(names):
        page = {"attribution": None, "sweeps": [], "robustness": None if robust is None else rel(
            figures.robustness_curves(robust, c, f"robust accuracy, class {name}", folder / f"{tag}robustness_{c}.png")),
                "hessian": rel(figures.hessian_heatmap(a["hbar"][c], blocks, c, f"mean |H|, class {name}",
                                                       folder / f"{tag}hessian_{c}.png"))}
        ex = a["examples"].get(c)
        if ex is not None:
            page["attribution"] = rel(figures.attribution_overlays(ex["images"], ex["maps"],
                                                                   f"{a['method']}, class {name}",
                                                                   folder / f"{tag}attribution_{c}.png"))
            sweeps = []
            for i, d in enumerate(ex["sweep"]["dims"]):
                title = f"class {name}, own dim {d}"
                item = {"dim": d, "grid": None, "probs": rel(figures.sweep_probabilities(
                    ex["sweep"]["probs"][i], ex["sweep"]["offsets"], names, c, title, folder / f"{tag}sweep_{c}_{d}_p.png"))}
                if ex["sweep"]["images"] is not None:
                    item["grid"] = rel(figures.sweep_grid(ex["sweep"]["images"][i], ex["sweep"]["offsets"], title,
                                                          folder / f"{tag}sweep_{c}_{d}_img.png"))
                sweeps.append(item)
            page["sweeps"] = sweeps
        out["classes"][c] = page
    return out


def write_report(analyses: list[dict], out_dir: Path) -> Path:
    """Render index.html and class_<k>.html for one run, or two side by side; returns index.html."""
    folder = out_dir / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    figs = [_run_figures(a, folder, f"run{i}_") for i, a in enumerate(analyses)]
    names = analyses[0]["class_names"]
    runs = [{"name": a["name"], "path": str(a["run"].path), "config": asdict(a["run"].config),
             "summary": a["run"].summary, "figures": f, "blocks": [a["blocks"][c].nonzero().flatten().tolist()
                                                                   for c in range(len(names))],
             "shared": a["shared"], "metrics": {k: a[k] for k, _ in METRICS},
             "per_class": {k: a[f"{k}_per_class"] if k != "accuracy" else a["class_accuracy"] for k, _ in METRICS}}
            for a, f in zip(analyses, figs)]
    chance = {"block_purity": sum(len(b) ** 2 for b in runs[0]["blocks"]) / len(names)
              / analyses[0]["hbar"].shape[-1] ** 2, "sweep_specificity": 1 / len(names)}
    for c, name in enumerate(names):
        render("class.html", out_dir / f"class_{c}.html", runs=runs, c=c, name=name, class_names=names,
               metrics=METRICS)
    return render("index.html", out_dir / "index.html", runs=runs, class_names=names, metrics=METRICS,
                  chance=chance, robustness_page=(out_dir / "robustness.html").is_file())
