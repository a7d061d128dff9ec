"""What each analysis command does, from a run folder to files on disk; the CLI only parses flags."""
from __future__ import annotations

from pathlib import Path

import torch

from .analysis.latents import collect
from .analysis.sweep import block_sweep_effect, sweep
from .metrics import sweep_specificity
from .registry import HerdError
from .run import Run


def resolve_class(run: Run, value: str) -> int:
    """A class given by index or name -> its index; otherwise an error listing the valid ones."""
    names = run.class_names
    if value in names and not value.isdigit():
        return names.index(value)
    if value.isdigit() and int(value) < len(names):
        return int(value)
    valid = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
    raise HerdError(f"class {value!r} is not in this run's data ({run.config.dataset}); valid classes: {valid}")


def resolve_dims(run: Run, spec: str, target: int) -> list[int]:
    """``all``, ``block`` (the class's own), ``shared``, or a comma list such as ``0,3,7``."""
    d = run.herd.latent_dim
    if spec == "all":
        return list(range(d))
    if spec == "block":
        return run.herd.block(target).tolist()
    if spec == "shared":
        dims = run.herd.shared.tolist()
        if not dims:
            raise HerdError("this run has no shared dims; use --dims block, all or a list")
        return dims
    try:
        dims = [int(v) for v in spec.split(",")]
    except ValueError:
        raise HerdError(f"--dims must be all, block, shared or a comma list of ints, got {spec!r}") from None
    bad = [v for v in dims if not 0 <= v < d]
    if bad:
        raise HerdError(f"latent dims {bad} are out of range; this run has dims 0..{d - 1}")
    return dims


def sweep_report(run: Run, target: int, out_dir: Path, samples: int = 8, span: float = 2.0, steps: int = 7,
                 dims: str = "all") -> tuple[Path, dict]:
    """Sweep the latent dims of ``samples`` test images of class ``target``; write PNGs and a page.

    Returns the page's path and {"dims", "block", "shared", "sweep_specificity", ...}.
    """
    from .report.figures import sweep_grid, sweep_probabilities
    from .report.html import render

    if samples < 1 or steps < 2 or span <= 0:
        raise HerdError("--samples must be >= 1, --steps >= 2 and --range > 0")
    data = collect(run.model, run.data("test"))
    z, y = data["z"], data["y"]
    chosen = z[y == target][:samples]
    if len(chosen) == 0:
        raise HerdError(f"the test split has no image of class {target}; pick another class")
    dim_list = resolve_dims(run, dims, target)
    std = z.std(0)
    result = sweep(run.model, chosen, dim_list, std, span, steps)
    effect = block_sweep_effect(run.model, z, y, run.herd.blocks.cpu(), std, span, steps)
    spec = sweep_specificity(effect)
    block, shared = run.herd.block(target).tolist(), run.herd.shared.tolist()

    folder = out_dir / f"sweep_class_{target}"
    folder.mkdir(parents=True, exist_ok=True)
    name = run.class_names[target]
    entries = []
    for i, d in enumerate(dim_list):
        kind = "own" if d in block else "shared" if d in shared else "other"
        title = f"class {name}, dim {d}" + (" (class block)" if kind == "own" else " (shared)" if kind == "shared" else "")
        probs = sweep_probabilities(result["probs"][i], result["offsets"], run.class_names, target, title,
                                    folder / f"dim{d}_probs.png")
        grid = None
        if result["images"] is not None:
            grid = sweep_grid(result["images"][i], result["offsets"], title, folder / f"dim{d}_images.png")
        entries.append({"index": d, "kind": kind, "probs": f"{folder.name}/{probs.name}",
                        "grid": f"{folder.name}/{grid.name}" if grid else None})
    page = render("sweep.html", out_dir / f"sweep_class_{target}.html", run_name=run.path.name,
                  class_index=target, class_name=name, samples=len(chosen), span=span, steps=steps,
                  has_decoder=run.decode is not None, block=block, shared=shared, dims=entries,
                  specificity=spec["sweep_specificity_per_class"][target], chance=1 / len(run.class_names))
    return page, {"dims": dim_list, "block": block, "shared": shared, **spec}


def report_dir(run: Run, out: str | None) -> Path:
    """``reports/<run name>/`` unless ``--out`` says otherwise."""
    path = Path(out) if out else Path("reports") / run.path.name
    path.mkdir(parents=True, exist_ok=True)
    return path



def analyse(run: Run, method: str = "integrated-gradients", per_class: int = 4, hessian_samples: int = 512) -> dict:
    """Everything a report shows about one run, as tensors and dicts (no drawing).

    Hessian block purity (mean |H| per class), latent attribution matrix and alignment, sweep
    specificity, latent-label mutual information, a PCA embedding, per-class accuracy, input
    attributions and block sweeps for ``per_class`` test images of every class.
    """
    from .analysis.attribution import attribute, class_latent_attribution
    from .metrics import (attribution_alignment, class_block_purity, embedding_2d, latent_label_information)
    from .regularizer import class_abs_sum, latent_hessian
    from .run import hessian_target

    model, cfg, names = run.model, run.config, run.class_names
    num_classes = len(names)
    data = collect(model, run.data("test"))
    x, z, y = data["x"], data["z"], data["y"]
    blocks = run.herd.blocks.cpu()
    std = z.std(0)

    hsum = torch.zeros(num_classes, z.shape[1], z.shape[1])
    counts = torch.zeros(num_classes)
    for xb, zb, yb in zip(x[:hessian_samples].split(128), z[:hessian_samples].split(128), y[:hessian_samples].split(128)):
        head, target, loss = hessian_target(model, cfg, xb, yb)
        H = latent_hessian(head, zb, target, loss, cfg.hessian_method).detach()
        total, count = class_abs_sum(H, yb, num_classes)
        hsum += total
        counts += count
    hbar = hsum / counts.clamp_min(1).view(-1, 1, 1)
    purity = class_block_purity(hbar, blocks)

    latent = class_latent_attribution(model.classify, z, y, num_classes, method)
    effect = block_sweep_effect(model, z, y, blocks, std)
    correct = data["logits"].argmax(1) == y
    chosen = {c: (y == c).nonzero().flatten()[:per_class] for c in range(num_classes)}
    chosen = {c: idx for c, idx in chosen.items() if len(idx)}
    all_idx = torch.cat(list(chosen.values()))
    maps = attribute(model, x[all_idx], y[all_idx], method, batch_size=32).split([len(i) for i in chosen.values()])
    examples = {c: {"images": x[idx], "maps": m, "sweep": sweep(model, z[idx], blocks[c].nonzero().flatten().tolist(), std)}
                for (c, idx), m in zip(chosen.items(), maps)}
    return {
        "run": run, "name": run.path.name, "class_names": names, "blocks": blocks,
        "shared": run.herd.shared.tolist(), "hbar": hbar, "y": y, "embedding": embedding_2d(z, "pca"),
        "latent_matrix": latent["matrix"], "examples": examples, "method": method,
        "accuracy": float(correct.float().mean()),
        "class_accuracy": [float(correct[y == c].float().mean()) if (y == c).any() else float("nan")
                           for c in range(num_classes)],
        "block_purity": float(torch.nanmean(purity)), "block_purity_per_class": purity.tolist(),
        **attribution_alignment(latent["per_sample"], y, blocks), **sweep_specificity(effect),
        **latent_label_information(z, y, num_classes),
    }


def attribute_report(run: Run, out_dir: Path, target: int | None = None, method: str = "integrated-gradients",
                     samples: int = 8) -> tuple[Path, dict]:
    """Input attributions of ``samples`` test images per class (or of class ``target``), and the
    class x latent-dim attribution matrix with its alignment; PNGs plus attribute.html."""
    from .analysis.attribution import attribute, class_latent_attribution
    from .metrics import attribution_alignment
    from .report.figures import attribution_overlays, class_dim_matrix
    from .report.html import render

    if samples < 1:
        raise HerdError("--samples must be at least 1")
    data = collect(run.model, run.data("test"))
    x, z, y = data["x"], data["z"], data["y"]
    names, blocks = run.class_names, run.herd.blocks.cpu()
    latent = class_latent_attribution(run.model.classify, z, y, len(names), method)
    scores = attribution_alignment(latent["per_sample"], y, blocks)
    folder = out_dir / "attribution"
    folder.mkdir(parents=True, exist_ok=True)
    matrix = class_dim_matrix(latent["matrix"], blocks, names, f"mean |{method}| of the true-class logit",
                              folder / f"latent_{method}.png")
    classes = []
    for c in ([target] if target is not None else range(len(names))):
        idx = (y == c).nonzero().flatten()[:samples]
        if len(idx) == 0:
            continue
        maps = attribute(run.model, x[idx], y[idx], method, batch_size=32)
        fig = attribution_overlays(x[idx], maps, f"{method}, class {names[c]}", folder / f"class{c}_{method}.png")
        classes.append({"index": c, "name": names[c], "block": blocks[c].nonzero().flatten().tolist(),
                        "alignment": scores["attribution_alignment_per_class"][c], "figure": f"{folder.name}/{fig.name}"})
    page = render("attribute.html", out_dir / "attribute.html", run_name=run.path.name, method=method,
                  matrix=f"{folder.name}/{matrix.name}", alignment=scores["attribution_alignment"],
                  chance=float(blocks[0].sum()) / blocks.shape[1], classes=classes)
    return page, scores


def _balanced_test_batch(run: Run, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """About n_samples test images, the same number from every class (in split order)."""
    data = run.data("test")
    from .data import dataset_labels

    labels = torch.as_tensor(dataset_labels(data))
    k = len(run.class_names)
    per = max(1, n_samples // k)
    idx = torch.cat([(labels == c).nonzero().flatten()[:per] for c in range(k)]).sort().values
    x = torch.stack([data[int(i)][0] for i in idx])
    return x, labels[idx]


def robustness_eval(run: Run, attacks: list[str], eps: list[float], steps: int = 10, restarts: int = 1,
                    n_samples: int = 200, progress=None) -> dict:
    """Robustness of one run, saved to <run>/robustness.json (atomically) and returned."""
    from .analysis.robustness import check_attack_request, evaluate_robustness
    from .run import write_json

    check_attack_request(attacks, eps, len(run.class_names))
    if steps < 1 or restarts < 1 or n_samples < 1:
        raise HerdError("--steps, --restarts and --n-samples must be at least 1")
    x, y = _balanced_test_batch(run, n_samples)
    result = evaluate_robustness(run.classifier, run.encode, x, y, run.herd.blocks.cpu(), attacks, eps, steps,
                                 restarts, progress=progress)
    result["settings"] = {"attacks": attacks, "eps": eps, "steps": steps, "restarts": restarts,
                          "n_samples": len(y), "run": str(run.path)}
    write_json(run.path / "robustness.json", result)
    return result


def robustness_page(runs: list[Run], results: list[dict], out_dir: Path) -> Path:
    """robustness.html: overall and per-class accuracy against eps, confusion, latent shift, checks."""
    from .report.figures import confusion_heatmap, robustness_curves
    from .report.html import render

    folder = out_dir / "robustness"
    folder.mkdir(parents=True, exist_ok=True)
    names = runs[0].class_names
    entries = []
    for i, (run, res) in enumerate(zip(runs, results)):
        tag = f"run{i}_"
        strongest = list(res["attacks"])[-1]
        eps_mid = sorted(res["attacks"][strongest], key=float)[len(res["attacks"][strongest]) // 2]
        entries.append({
            "name": run.path.name, "result": res, "strongest": strongest, "eps_mid": eps_mid,
            "blocks": [run.herd.block(c).tolist() for c in range(len(names))],
            "overall": f"{folder.name}/" + robustness_curves(res, None, f"{run.path.name}: all classes",
                                                             folder / f"{tag}overall.png").name,
            "confusion": f"{folder.name}/" + confusion_heatmap(res["attacks"][strongest][eps_mid]["confusion"], names,
                                                               f"{strongest}, eps {eps_mid}",
                                                               folder / f"{tag}confusion.png").name,
            "classes": [f"{folder.name}/" + robustness_curves(res, c, f"class {names[c]}",
                                                              folder / f"{tag}class{c}.png").name
                        for c in range(len(names))],
        })
    return render("robustness.html", out_dir / "robustness.html", runs=entries, class_names=names)
