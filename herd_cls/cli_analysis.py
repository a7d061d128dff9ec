"""The analysis commands of ``herd-cls``: sweep, report, attribute and robustness. Each parses its
flags, hands the work to commands.py and prints a summary, the page's path last."""

from __future__ import annotations

import click

from .analysis import attacks as _attacks  # the robustness command's choices and help
from .analysis.sweep import SPAN, STEPS
from .cli_options import METHOD_OPTION, OUT_OPTION, QUIET_OPTION, RUN_OPTION, friendly

ATTACK_NAMES = _attacks.ATTACKS.names()


@click.command()
@click.option(
    "--class",
    "class_",
    default=None,
    help="Class to sweep, by index or name. Optional for a run with a decoder: without it, every "
    "latent dim is swept on a few test images and drawn as one grid (sweep_grid.html).",
)
@RUN_OPTION
@click.option("--samples", default=8, show_default=True, help="Test images of the class to sweep.")
@click.option(
    "--range",
    "span",
    default=SPAN,
    show_default=True,
    help="Sweep from -RANGE to +RANGE standard deviations of each dim (over the test set).",
)
@click.option("--steps", default=STEPS, show_default=True, help="Steps along each sweep.")
@click.option(
    "--dims",
    default="auto",
    show_default=True,
    help="Dims to draw one by one: auto (every dim of a latent of at most 32 dims, else the "
    "class's block and the shared dims), all, block (the class's own), shared, or a list such as "
    "0,3,7. The page always shows how much every dim moves the class, in one figure.",
)
@OUT_OPTION
@QUIET_OPTION
@friendly
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
            "that change the image less than a tenth as much as the liveliest: "
            f"{quiet_dims or 'none'}"
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
        f"sweep specificity {spec['sweep_specificity_per_class'][result.target]:.3f} (all classes "
        f"{spec['sweep_specificity']:.3f}, chance {1 / len(run.class_names):.3f})"
    )
    click.echo(str(page))


@click.command()
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
    "'all', or a comma list of indices or names. The index lists every class either way.",
)
@METHOD_OPTION
@OUT_OPTION
@QUIET_OPTION
@friendly
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


@click.command()
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
@friendly
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


def _comma_list(kind):
    """A click callback: a comma list of ``kind`` values."""

    def parse(ctx, param, value):
        try:
            return [kind(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"expected a comma list, got {value!r}") from None

    return parse


def _attacks_where(**meta) -> str:
    """The registered attacks whose entries have every field of ``meta``, as a comma list."""
    return ", ".join(
        n
        for n in ATTACK_NAMES
        if all(getattr(_attacks.ATTACKS.get(n), k) == v for k, v in meta.items())
    )


@click.command()
@RUN_OPTION
@click.option(
    "--attack",
    "attacks",
    default="fgsm,pgd-linf,apgd-ce",
    show_default=True,
    callback=_comma_list(str),
    help="Comma list of: "
    + "; ".join(f"{n} ({_attacks.ATTACKS.get(n).help})" for n in ATTACK_NAMES)
    + f". Gradient-free: {_attacks_where(gradient_free=True)} (they see only the logits, so masked "
    "gradients do not stop them).",
)
@click.option(
    "--eps",
    default="0,0.03,0.1,0.3",
    show_default=True,
    callback=_comma_list(float),
    help="Comma list of perturbation budgets in [0, 1] pixel units (the L2 norm for "
    f"{_attacks_where(norm='l2')}).",
)
@click.option("--steps", default=10, show_default=True, help="Iterations of the iterative attacks.")
@click.option(
    "--restarts",
    default=1,
    show_default=True,
    help=f"Restarts of every iterative attack: {_attacks_where(restarts='itself')} restart "
    f"themselves; {_attacks_where(restarts='here')} rerun from a new random start and keep, per "
    "image, a start that fools the model.",
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
    "its model at every eps and evaluated on this one, as the attack transfer-<name>.",
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
@friendly
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
    input gradients do not vanish. Each is printed as pass or FLAG, and the flags that point at
    gradient masking are named. Saves robustness.json in each run folder and robustness.html in the
    report folder (the last line printed).
    """
    from . import commands
    from .analysis.sanity import masking_signs
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
            f"images; median input-gradient norm: loss {g['ce_median']:.3g}, logit margin "
            f"{g['margin_median']:.3g}"
        )
        for name, table in res["attacks"].items():
            click.echo(
                f"  {name:17s} "
                + "  ".join(f"eps {e}: {row['robust_accuracy']:.3f}" for e, row in table.items())
            )
        flagged = [c for c in res["checks"] if not c["passed"]]
        signs = ", ".join(masking_signs(res["checks"])) or "no sign of it"
        click.echo(
            f"  sanity checks: {len(res['checks']) - len(flagged)} pass, {len(flagged)} FLAG; "
            f"gradient masking: {signs}"
        )
        for check in res["checks"]:
            click.echo(
                f"    {'pass' if check['passed'] else 'FLAG'}  {check['check']} "
                f"({check['detail']})",
                err=not check["passed"],
            )
    click.echo(str(page))
