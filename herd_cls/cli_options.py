"""What the ``herd-cls`` commands share: the error handling every command wears, and the options of
the analysis commands (the run, the report folder, quiet, the attribution method)."""

from __future__ import annotations

import functools
import sys

import click

from .analysis.attribution import ATTRIBUTIONS
from .registry import HerdError


def friendly(fn):
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


def _attribution_help() -> str:
    return (
        "captum attribution method for inputs and latents: "
        + "; ".join(f"{name}: {ATTRIBUTIONS.get(name).help}" for name in ATTRIBUTIONS.names())
        + "."
    )


METHOD_OPTION = click.option(
    "--method",
    default="integrated-gradients",
    show_default=True,
    type=click.Choice(ATTRIBUTIONS.names()),
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
