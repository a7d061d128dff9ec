"""The ``herd-cls`` command line: the group, the train command and where the analysis commands join
it. Only the CLI modules know about flags, files and the order of stages; the analysis commands are
in cli_analysis.py, the options and error handling they share in cli_options.py."""

from __future__ import annotations

import json
import os
from dataclasses import fields

import click

from .cli_analysis import attribute, report, robustness, sweep
from .cli_options import friendly
from .options import option_help
from .config import Config, choices, option_name
from .registry import HerdError


def _config_options(fn):
    """One CLI option per Config field, help and choices taken from the field (defaults shown)."""
    for f in reversed(fields(Config)):
        name = option_name(f.name)
        help_text = option_help(f) + (f" [default: {f.default}]" if f.default is not None else "")
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


for command in (sweep, report, attribute, robustness):
    main.add_command(command)


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
@friendly
def train(config_path, resume, quiet, **options):
    """Train a model with HeRD and write a run folder.

    The folder holds the resolved config.yaml, metrics.jsonl/metrics.csv per epoch, an atomic
    checkpoint.pt (for --resume), model.safetensors and summary.json; <out-dir>/latest points at it
    once training has finished. The last line printed is the run folder and test accuracy.

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
            f"another process of this torchrun job failed ({str(err).splitlines()[0][:120]}); see "
            "its message above; runs/latest was not moved"
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
        f"block purity, class mean {fmt(summary['block_purity'])}{error}{chance}  train "
        f"{summary['train_seconds']:.0f}s"
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
