"""The ``herd-cls`` command line. Only this module knows about flags, files and the order of
stages."""

from __future__ import annotations

import functools
import json
import os
import sys
from dataclasses import fields

import click

from .config import Config, choices, option_name
from .registry import HerdError


def _friendly(fn):
    """Turn user errors into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HerdError as err:
            raise click.ClickException(str(err)) from None
        except KeyboardInterrupt:
            click.echo(
                "interrupted; an unfinished run is not linked as latest (resume it with --resume)",
                err=True,
            )
            sys.exit(130)

    return wrapper


def _config_options(fn):
    """One CLI option per Config field, help and choices taken from the field (defaults shown)."""
    for f in reversed(fields(Config)):
        name, meta = option_name(f.name), f.metadata
        help_text = meta["help"] + (f" [default: {f.default}]" if f.default is not None else "")
        if f.type == "bool":
            fn = click.option(f"{name}/--no-{name[2:]}", f.name, default=None, help=help_text)(fn)
            continue
        kind = (
            click.Choice(choices(f.name))
            if choices(f.name)
            else (float if "float" in f.type else int if "int" in f.type else str)
        )
        fn = click.option(name, f.name, type=kind, default=None, help=help_text)(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="herd_cls")
def main():
    """HeRD: class-specific disentanglement of timm classifiers and autoencoders.

    \b
    herd-cls train --backbone resnet18 --reg class    train; writes runs/<name>/, links runs/latest
    """


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="YAML file of options (see configs/); options given here override it.",
)
@click.option(
    "--resume",
    type=click.Path(file_okay=False),
    help="Continue an interrupted run folder from its last checkpoint, with its own config.",
)
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@_config_options
@_friendly
def train(config_path, resume, quiet, **options):
    """Train a model with HeRD and write a run folder.

    The folder holds the resolved config.yaml, metrics.jsonl/metrics.csv per epoch, an atomic
    checkpoint.pt (for --resume), model.safetensors and summary.json; <out-dir>/latest points at
    it once training has finished. The last line printed is the run folder and test accuracy.

    \b
    On several processes or GPUs, launch the same command with torchrun:
    torchrun --nproc_per_node 2 -m herd_cls train ...   (--batch-size is per process)
    """
    from . import distributed
    from .config import load_config
    from .train import train as run_training

    cfg = load_config(config_path, options)
    try:
        run_dir = run_training(cfg, resume=resume, progress=not quiet)
    except RuntimeError as err:  # under torchrun: a collective fails when another rank has died
        if "WORLD_SIZE" not in os.environ:
            raise
        raise HerdError(
            f"another process of this torchrun job failed ({str(err).splitlines()[0][:120]}); "
            "see its message above; runs/latest was not moved"
        ) from None
    finally:
        distributed.stop()
    if int(os.environ.get("RANK", "0")) != 0:  # rank 0 speaks for the job
        return
    summary = json.loads((run_dir / "summary.json").read_text())
    for line in _purity_lines(summary):
        click.echo(line)
    click.echo(f"run {run_dir}  test accuracy {summary['test_accuracy']:.4f}")


def _purity_lines(summary: dict) -> list[str]:
    """Both views of block purity from summary.json, each beside its chance level (n/d)^2, and the
    classes whose median image is far purer than their class mean."""

    def fmt(value) -> str:
        return "–" if value is None or value != value else f"{value:.3f}"

    from .layout import BlockLayout

    cfg = summary.get("config") or {}
    k, d, s = cfg.get("num_classes"), cfg.get("latent_dim"), cfg.get("shared_dims") or 0
    chance = (
        f"  (chance {BlockLayout.split(k, d, s).chance():.3f})"
        if k and d and BlockLayout.fits(k, d, s)
        else ""
    )
    error = summary.get("block_purity_standard_error")
    error = f" ± {error:.3f}" if error is not None and error == error else ""
    lines = [
        f"block purity, class mean {fmt(summary['block_purity'])}{error}{chance}  "
        f"train {summary['train_seconds']:.0f}s"
    ]
    if "image_purity_median_per_class" in summary:
        lines.append(
            f"per-image purity: mean {fmt(summary.get('image_purity_mean'))}  median "
            f"{fmt(summary.get('image_purity_median'))}  images >= 0.5: "
            f"{fmt(summary.get('image_purity_at_least_half'))}{chance}"
        )
        means, medians = (
            summary.get("block_purity_per_class", []),
            summary["image_purity_median_per_class"],
        )
        gaps = [
            f"{c} ({fmt(m)} vs median image {fmt(i)})"
            for c, (m, i) in enumerate(zip(means, medians))
            if m == m and i == i and i - m >= 0.25
        ]
        if gaps:
            lines.append(
                "classes whose mean is decided by a few images (see their report pages): "
                + ", ".join(gaps)
            )
    return lines


def _names(registry_module: str, attr: str) -> list[str]:
    import importlib

    return getattr(importlib.import_module(registry_module), attr).names()


ATTACK_NAMES = _names("herd_cls.analysis.attacks", "ATTACKS")


def _attribution_help() -> str:
    from .analysis.attribution import ATTRIBUTIONS

    return (
        "captum attribution method for inputs and latents: "
        + "; ".join(f"{name}: {ATTRIBUTIONS.get(name).help}" for name in ATTRIBUTIONS.names())
        + "."
    )


METHOD_OPTION = click.option(
    "--method",
    default="integrated-gradients",
    show_default=True,
    type=click.Choice(_names("herd_cls.analysis.attribution", "ATTRIBUTIONS")),
    help=_attribution_help(),
)
RUN_OPTION = click.option(
    "--run",
    "run_path",
    default="runs/latest",
    show_default=True,
    type=click.Path(),
    help="Run folder to analyse.",
)
OUT_OPTION = click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Report folder [default: reports/<run name>].",
)
QUIET_OPTION = click.option(
    "--quiet",
    is_flag=True,
    help="No progress bars (they are off anyway when stderr is not a terminal).",
)


@main.command()
@click.option(
    "--class",
    "class_",
    default=None,
    help="Class to sweep, by index or name. Optional for a run with a decoder: without it, every "
    "latent "
    "dim is swept on a few test images and drawn as one grid (sweep_grid.html).",
)
@RUN_OPTION
@click.option("--samples", default=8, show_default=True, help="Test images of the class to sweep.")
@click.option(
    "--range",
    "span",
    default=2.0,
    show_default=True,
    help="Sweep from -RANGE to +RANGE standard deviations of each dim (over the test set).",
)
@click.option("--steps", default=7, show_default=True, help="Steps along each sweep.")
@click.option(
    "--dims",
    default="auto",
    show_default=True,
    help="Dims to draw one by one: auto (every dim of a latent of at most 32 dims, else the "
    "class's "
    "block and the shared dims), all, block (the class's own), shared, or a list such as 0,3,7. "
    "The page always shows how much every dim moves the class, in one figure.",
)
@OUT_OPTION
@QUIET_OPTION
@_friendly
def sweep(class_, run_path, samples, span, steps, dims, out, quiet):
    """Sweep latent dims of real images of one class; image grids (with a decoder) and probability
    plots.

    Writes PNGs and sweep_class_<C>.html into the report folder (sweep_grid.html, every dim on a few
    images, for a decoder run without --class); the last line printed is the page.
    """
    from . import commands
    from .run import load_run

    run = load_run(run_path)
    page, result = commands.sweep(run, class_, samples, span, steps, dims, out, quiet)
    if class_ is None:
        quiet_dims = [
            d for d, c in zip(result.dims, result.change.tolist()) if 10 * c < result.change.max()
        ]
        click.echo(
            f"every latent dim swept on {result.images.shape[2]} images from {result.source}; dims "
            f"that "
            f"change the image less than a tenth as much as the liveliest: {quiet_dims or 'none'}"
        )
        click.echo(str(page))
        return
    if run.decode is None:
        click.echo("this run has no decoder: probability sweeps only")
    spec = result.specificity
    click.echo(
        f"class {result.target} ({run.class_names[result.target]}): block dims {result.block}, "
        f"shared dims {result.shared or 'none'}"
    )
    click.echo(
        f"sweep specificity {spec['sweep_specificity_per_class'][result.target]:.3f} "
        f"(all classes {spec['sweep_specificity']:.3f}, chance {1 / len(run.class_names):.3f})"
    )
    click.echo(str(page))


@main.command()
@RUN_OPTION
@click.option(
    "--compare",
    "compare_path",
    default=None,
    type=click.Path(),
    help="A second run folder to show side by side (e.g. a --reg none baseline).",
)
@click.option(
    "--classes",
    "classes",
    default="worst",
    show_default=True,
    help="Which classes get a page with pictures: 'worst' (the 10 of lowest class-mean purity), "
    "'all', "
    "or a comma list of indices or names. The index lists every class either way.",
)
@METHOD_OPTION
@OUT_OPTION
@QUIET_OPTION
@_friendly
def report(run_path, compare_path, classes, method, out, quiet):
    """Write an HTML report: an index page listing every class, and a page per class that needs
    looking at.

    The folder (default reports/<run name>/) holds index.html, class_<k>.html and figures/; links
    are relative, so it can be zipped and opened from file://. The last line printed is index.html.
    """
    from . import commands
    from .analysis.scores import METRICS
    from .run import load_run

    runs = [load_run(run_path)] + ([load_run(compare_path)] if compare_path else [])
    index, analyses = commands.report(runs, method, out, quiet, classes)
    for a in analyses:
        click.echo(
            f"{a.name}: "
            + "  ".join(f"{METRICS.get(k).label} {v:.3f}" for k, v in a.metrics().items())
        )
        for k, why in a.constant.items():
            click.echo(f"  {METRICS.get(k).label}: not measured, {why}")
        if a.collapse:
            click.echo(f"  decoder collapsed: {'; '.join(a.collapse)}", err=True)
    click.echo(str(index))


@main.command()
@RUN_OPTION
@click.option(
    "--class",
    "class_",
    default=None,
    help="Only this class (index or name) [default: every class].",
)
@METHOD_OPTION
@click.option(
    "--samples", default=8, show_default=True, help="Test images per class for input attributions."
)
@OUT_OPTION
@QUIET_OPTION
@_friendly
def attribute(run_path, class_, method, samples, out, quiet):
    """Input and latent attributions with captum, and the latent attribution alignment.

    Writes attribute.html and attribution/*.png into the report folder; the last line printed is the
    page.
    """
    from . import commands
    from .run import load_run

    run = load_run(run_path)
    page, result = commands.attribute(run, class_, method, samples, out, quiet)
    per_class = result.alignment["attribution_alignment_per_class"]
    click.echo(
        "latent attribution alignment: "
        + "  ".join(f"{run.class_names[c]} {per_class[c]:.2f}" for c in result.images)
    )
    click.echo(f"overall {result.alignment['attribution_alignment']:.3f}")
    click.echo(str(page))


def _csv(kind):
    def parse(ctx, param, value):
        try:
            return [kind(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"expected a comma list, got {value!r}") from None

    return parse


from .analysis import attacks as _attacks  # noqa: E402  the robustness command's choices and help


def _attacks_where(**meta) -> str:
    """The registered attacks whose entries have every field of ``meta``, as a comma list."""
    return ", ".join(
        n
        for n in ATTACK_NAMES
        if all(getattr(_attacks.ATTACKS.get(n), k) == v for k, v in meta.items())
    )


@main.command()
@RUN_OPTION
@click.option(
    "--attack",
    "attacks",
    default="fgsm,pgd-linf,apgd-ce",
    show_default=True,
    callback=_csv(str),
    help="Comma list of: "
    + "; ".join(f"{n} ({_attacks.ATTACKS.get(n).help})" for n in ATTACK_NAMES)
    + f". Gradient-free: {_attacks_where(gradient_free=True)} (they see only the logits, so masked "
    "gradients do not stop them).",
)
@click.option(
    "--eps",
    default="0,0.03,0.1,0.3",
    show_default=True,
    callback=_csv(float),
    help="Comma list of perturbation budgets in [0, 1] pixel units (the L2 norm for "
    f"{_attacks_where(norm='l2')}).",
)
@click.option("--steps", default=10, show_default=True, help="Iterations of the iterative attacks.")
@click.option(
    "--restarts",
    default=1,
    show_default=True,
    help=f"Restarts of every iterative attack: {_attacks_where(restarts='itself')} restart "
    f"themselves; "
    f"{_attacks_where(restarts='here')} rerun from a new random start and keep, per image, a start "
    "that fools the model.",
)
@click.option(
    "--queries",
    default=1000,
    show_default=True,
    help="Model evaluations per image of the gradient-free attacks "
    f"({_attacks_where(gradient_free=True)}).",
)
@click.option(
    "--transfer-from",
    "transfer_path",
    default=None,
    type=click.Path(),
    help="A run folder of the same data (e.g. a --reg none run): --transfer-attack is crafted on "
    "its "
    "model at every eps and evaluated on this one, as the attack transfer-<name>.",
)
@click.option(
    "--transfer-attack",
    default="pgd-linf",
    show_default=True,
    type=click.Choice(_attacks.transferable()),
    help="The white-box attack that --transfer-from crafts (--steps and --restarts apply).",
)
@click.option(
    "--n-samples", default=200, show_default=True, help="Class-balanced test images to attack."
)
@click.option(
    "--compare",
    "compare_path",
    default=None,
    type=click.Path(),
    help="A second run to evaluate the same way and show side by side.",
)
@OUT_OPTION
@QUIET_OPTION
@_friendly
def robustness(
    run_path,
    attacks,
    eps,
    steps,
    restarts,
    queries,
    transfer_path,
    transfer_attack,
    n_samples,
    compare_path,
    out,
    quiet,
):
    """Clean and robust accuracy per class, attack and eps, with where in the latent blocks attacks
    move z.

    Every result carries sanity checks that tell robustness from gradient masking: accuracy falls as
    eps grows; white-box attacks at eps >= 0.3, and PGD at an unbounded eps of 1, leave about no
    image correct; gradient-free and transfer attacks are not stronger than the white-box ones;
    input gradients do not vanish. Each is printed as pass or FLAG. Saves robustness.json in each
    run folder and robustness.html in the report folder (the last line printed).
    """
    from . import commands
    from .run import load_run

    runs = [load_run(run_path)] + ([load_run(compare_path)] if compare_path else [])
    source = load_run(transfer_path) if transfer_path else None
    page, results = commands.robustness(
        runs, attacks, eps, steps, restarts, n_samples, out, quiet, queries, source, transfer_attack
    )
    for run, res in zip(runs, results):
        g = res["gradients"]
        click.echo(
            f"{run.path.name}: clean accuracy {res['clean']['accuracy']:.3f} on {res['n_samples']} "
            f"images; "
            f"median input-gradient norm: loss {g['ce_median']:.3g}, logit margin "
            f"{g['margin_median']:.3g}"
        )
        for name, table in res["attacks"].items():
            click.echo(
                f"  {name:17s} "
                + "  ".join(f"eps {e}: {row['robust_accuracy']:.3f}" for e, row in table.items())
            )
        flagged = [c for c in res["checks"] if not c["passed"]]
        click.echo(
            f"  sanity checks: {len(res['checks']) - len(flagged)} pass, {len(flagged)} FLAG"
        )
        for check in res["checks"]:
            click.echo(
                f"    {'pass' if check['passed'] else 'FLAG'}  {check['check']} "
                f"({check['detail']})",
                err=not check["passed"],
            )
    click.echo(str(page))
