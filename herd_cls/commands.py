"""What each analysis command does, from a run folder to files on disk: analysis, then page writer.

The CLI only parses flags; these functions resolve what the user named and tie the steps together.
"""

from __future__ import annotations

from pathlib import Path

from .analysis.class_views import AttributionResult, ClassSweep, attribute_classes, sweep_class
from .analysis.decoder import LatentGrid, latent_grid
from .analysis.run_attacks import attack_run
from .analysis.runs import RunAnalysis, analyse
from .registry import HerdError
from .report import command_pages, pages
from .run import Run, write_json


def resolve_class(run: Run, value: str) -> int:
    """A class given by index or name -> its index; otherwise an error listing the valid ones."""
    names = run.class_names
    if value in names and not value.isdigit():
        return names.index(value)
    if value.isdigit() and int(value) < len(names):
        return int(value)
    valid = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
    raise HerdError(
        f"class {value!r} is not in this run's data ({run.config.dataset}); valid classes: {valid}"
    )


# --dims auto sweeps every dim of a latent this small, else the class block and shared dims
AUTO_ALL_DIMS = 32


def parse_dims(run: Run, spec: str, target: int) -> list[int]:
    """``auto`` (every dim up to AUTO_ALL_DIMS dims, else the class's block and the shared dims),
    ``all``, ``block`` (the class's own), ``shared``, or a comma list such as ``0,3,7``."""
    d = run.layout.latent_dim
    if spec == "auto":
        return (
            list(range(d))
            if d <= AUTO_ALL_DIMS
            else run.layout.block(target).tolist() + run.layout.shared.tolist()
        )
    if spec == "all":
        return list(range(d))
    if spec == "block":
        return run.layout.block(target).tolist()
    if spec == "shared":
        dims = run.layout.shared.tolist()
        if not dims:
            raise HerdError("this run has no shared dims; use --dims block, all or a list")
        return dims
    try:
        dims = [int(v) for v in spec.split(",")]
    except ValueError:
        raise HerdError(
            f"--dims must be auto, all, block, shared or a comma list of ints, got {spec!r}"
        ) from None
    bad = [v for v in dims if not 0 <= v < d]
    if bad:
        raise HerdError(f"latent dims {bad} are out of range; this run has dims 0..{d - 1}")
    return dims


def progress_bar(desc: str, total: int, quiet: bool = False):
    """A tqdm bar on stderr; off with ``quiet`` and whenever stderr is not a terminal (no redraws in
    logs)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, leave=False, disable=True if quiet else None, dynamic_ncols=True
    )


def report_dir(run: Run, out: str | None) -> Path:
    """``reports/<run name>/`` unless ``--out`` says otherwise."""
    path = Path(out) if out else Path("reports") / run.path.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def sweep(
    run: Run,
    class_: str | None,
    samples: int,
    span: float,
    steps: int,
    dims: str,
    out: str | None,
    quiet: bool = False,
) -> tuple[Path, ClassSweep | LatentGrid]:
    """The class sweep page of ``class_``; without a class (decoder runs), the grid of every latent
    dim."""
    if class_ is None:
        if run.decode is None:
            raise HerdError(
                "this run has no decoder: name a class to sweep with --class (its dims are drawn "
                "by a post-hoc decoder)"
            )
        with progress_bar("sweep", 1, quiet) as bar:
            grid = latent_grid(run, None, min(samples, 4), span, steps)
            bar.update()
            page = command_pages.write_grid_page(run.path.name, grid, span, report_dir(run, out))
            return page, grid
    target = resolve_class(run, class_)
    dim_list = parse_dims(run, dims, target)
    with progress_bar("sweep", 2, quiet) as bar:
        result = sweep_class(run, target, dim_list, samples, span, steps)
        bar.update()
        page = command_pages.write_sweep_page(
            run.path.name, run.class_names, run.layout, result, report_dir(run, out)
        )
    return page, result


def attribute(
    run: Run, class_: str | None, method: str, samples: int, out: str | None, quiet: bool = False
) -> tuple[Path, AttributionResult]:
    classes = (
        [resolve_class(run, class_)] if class_ is not None else list(range(len(run.class_names)))
    )
    with progress_bar("attribute", 2, quiet) as bar:
        result = attribute_classes(run, classes, method, samples)
        bar.update()
        page = command_pages.write_attribution_page(
            run.path.name, run.class_names, run.layout, result, report_dir(run, out)
        )
    return page, result


def parse_classes(run: Run, spec: str) -> list[int] | None:
    """``worst`` -> None (the analysis picks them), ``all`` -> every class, else a comma list of
    classes."""
    if spec == "worst":
        return None
    if spec == "all":
        return list(range(len(run.class_names)))
    return [resolve_class(run, v.strip()) for v in spec.split(",")]


def report(
    runs: list[Run], method: str, out: str | None, quiet: bool = False, classes: str = "worst"
) -> tuple[Path, list[RunAnalysis]]:
    """Analyse the runs (a second one for --compare gets the first one's class pages) and write the
    report."""
    _same_classes(runs)
    analyses = []
    chosen = parse_classes(runs[0], classes)
    with progress_bar("report", len(runs) + 1, quiet) as bar:
        for r in runs:
            analyses.append(analyse(r, method, classes=chosen))
            chosen = (
                chosen
                if chosen is not None or not analyses[-1].class_pages
                else list(analyses[-1].examples)
            )
            bar.update()
        page = pages.write_report(analyses, report_dir(runs[0], out))
    return page, analyses


def robustness(
    runs: list[Run],
    attacks: list[str],
    eps: list[float],
    steps: int,
    restarts: int,
    n_samples: int,
    out: str | None,
    quiet: bool = False,
    queries: int = 1000,
    transfer_from: Run | None = None,
    transfer_attack: str = "pgd-linf",
) -> tuple[Path, list[dict]]:
    """Attack every run, save each result as <run>/robustness.json (atomically), write
    robustness.html."""
    _same_classes(runs)
    results = []
    for run in runs:
        total = (len(attacks) + (transfer_from is not None)) * len(eps)
        with progress_bar(f"attacking {run.path.name}", total, quiet) as bar:
            results.append(
                attack_run(
                    run,
                    attacks,
                    eps,
                    steps,
                    restarts,
                    n_samples,
                    queries,
                    transfer_from,
                    transfer_attack,
                    progress=bar.update,
                )
            )
        write_json(run.path / "robustness.json", results[-1])
    page = command_pages.write_robustness_page(
        [r.path.name for r in runs],
        [r.layout for r in runs],
        results,
        runs[0].class_names,
        report_dir(runs[0], out),
    )
    return page, results


def _same_classes(runs: list[Run]) -> None:
    if len(runs) == 2 and runs[0].class_names != runs[1].class_names:
        raise HerdError(
            "--compare needs two runs on the same classes; these runs' data sets differ"
        )
