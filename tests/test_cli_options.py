"""What the commands share: a user error is one line and exit 1, an interrupt exit 130, never a
traceback; the shared options' defaults and choices."""

import click
from click.testing import CliRunner

from herd_cls.analysis.attribution import ATTRIBUTIONS
from herd_cls.cli_options import (
    METHOD_OPTION,
    OUT_OPTION,
    QUIET_OPTION,
    RUN_OPTION,
    friendly,
)
from herd_cls.registry import HerdError


@click.command()
@click.option("--fail", type=click.Choice(["none", "user", "interrupt"]), default="none")
@RUN_OPTION
@METHOD_OPTION
@OUT_OPTION
@QUIET_OPTION
@friendly
def toy(fail, run_path, method, out, quiet):
    if fail == "user":
        raise HerdError("no such run")
    if fail == "interrupt":
        raise KeyboardInterrupt
    click.echo(f"{run_path} {method} {out} {quiet}")


def test_user_errors_and_interrupts_end_in_one_line_without_a_traceback():
    runner = CliRunner()
    bad = runner.invoke(toy, ["--fail", "user"])
    assert bad.exit_code == 1 and bad.output == "Error: no such run\n"
    cut = runner.invoke(toy, ["--fail", "interrupt"])
    assert cut.exit_code == 130 and "Traceback" not in cut.output
    assert cut.output.startswith("interrupted; an unfinished run is not linked as latest")


def test_shared_options_defaults_and_choices():
    runner = CliRunner()
    res = runner.invoke(toy, [])
    assert res.exit_code == 0 and res.output == "runs/latest integrated-gradients None False\n"
    res = runner.invoke(toy, ["--method", "saliency", "--out", "r", "--quiet", "--run", "x"])
    assert res.output == "x saliency r True\n"
    assert runner.invoke(toy, ["--method", "nope"]).exit_code == 2
    help_text = runner.invoke(toy, ["--help"]).output
    assert all(name in help_text for name in ATTRIBUTIONS.names())
