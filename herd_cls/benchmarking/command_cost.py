"""What herd_cls's commands cost, each run as a user runs it (:func:`.timing.herd_cli`, a process of
its own): training with a regularizer against ``--reg none``, training in several processes, the
analysis commands on one run, and the report and sweep of a generated image folder of K classes."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from .timing import Finished, herd_cli


def train_summary(options: list, reg: str, folder: Path, processes: int = 1) -> dict:
    """The summary.json of ``herd-cls train OPTIONS --reg REG`` trained into ``folder``."""
    where = ["--out-dir", folder.parent, "--name", folder.name]
    herd_cli("train", *options, "--reg", reg, *where, quiet=True, processes=processes)
    return json.loads((folder / "summary.json").read_text())


@dataclass
class TrainingCost:
    """Median training seconds of ``runs`` interleaved runs without and with the regularizer, and
    the first regularised run's summary.json (what a user reads of it)."""

    runs: int
    none_seconds: float
    regularised_seconds: float
    summary: dict

    @property
    def ratio(self) -> float:
        return self.regularised_seconds / self.none_seconds


def training_cost(options: list, runs: int, folder: Path, reg: str = "class") -> TrainingCost:
    """``herd-cls train OPTIONS`` with ``--reg none`` and ``--reg REG`` in turn, ``runs`` times
    (interleaved, so that a slower spell of the machine falls on both), into folders under
    ``folder``."""
    seconds, summaries = {"none": [], reg: []}, []
    for r in range(runs):
        for name in seconds:
            summary = train_summary(options, name, folder / f"{name}-{r}")
            seconds[name].append(summary["train_seconds"])
            summaries += [summary] * (name == reg)
    none, regularised = (statistics.median(s) for s in seconds.values())
    return TrainingCost(runs, none, regularised, summaries[0])


@dataclass
class DistributedCost:
    """The README run (``--reg class``) trained ``runs`` times by 1 process with ``batch`` and by 2
    (gloo) with half of it each: each count's summaries."""

    batch: int
    summaries: dict[int, list[dict]]  # {processes: summary.json of each run}

    def seconds(self, processes: int) -> float:
        """Median training seconds."""
        return statistics.median(s["train_seconds"] for s in self.summaries[processes])

    def mean(self, processes: int, field: str) -> float:
        return statistics.mean(s[field] for s in self.summaries[processes])

    def gap(self, field: str) -> float:
        """|2 processes - 1 process| of ``field`` in the first run of each."""
        return abs(self.summaries[2][0][field] - self.summaries[1][0][field])

    @property
    def speedup(self) -> float:
        """Throughput of 2 processes over that of 1."""
        return self.seconds(1) / self.seconds(2)


def distributed_cost(runs: int, folder: Path, batch: int = 64) -> DistributedCost:
    """The README run trained by 1 process and by 2, ``runs`` times in turn, into ``folder``; a
    launcher's own variables (RANK, WORLD_SIZE, LOCAL_RANK) are removed first."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(name, None)
    summaries = {1: [], 2: []}
    for r in range(runs):
        for n in summaries:
            options = ["--backbone", "resnet18", "--batch-size", str(batch // n), "--quiet"]
            summaries[n].append(train_summary(options, "class", Path(folder) / f"{n}-{r}", n))
    return DistributedCost(batch, summaries)


def command_seconds(command: list, run: Path, repeats: int, fresh: bool = False) -> list[float]:
    """Seconds of each of ``repeats`` runs of ``herd-cls COMMAND --run RUN``, whole process;
    ``fresh``: each on the run as train leaves it (its fitted post-hoc decoder removed first)."""
    times = []
    for _ in range(repeats):
        for cached in Path(run).glob("posthoc_decoder.*") if fresh else ():
            cached.unlink()
        times.append(herd_cli(*command, "--run", run, quiet=True).seconds)
    return times


@dataclass
class ClassScaling:
    """The report and a sweep (the second; the first fits the post-hoc decoder) of one run of
    ``classes`` classes, and how many files the report wrote."""

    classes: int
    report: Finished
    files: int
    sweep: Finished


def class_scaling(classes: int, folder: Path, per_class: int = 12, size: int = 32) -> ClassScaling:
    """A generated image folder of ``classes`` classes, ``per_class`` images of ``size`` pixels each
    (:func:`herd_cls.builtin_data.make_templates`), trained one epoch (conv backbone, class HeRD)
    in ``folder``, then its report and sweep of class 1, timed."""
    from herd_cls.builtin_data import make_templates
    from herd_cls.image_sets import save_image_folder

    data, out = folder / "data", folder / "report"
    save_image_folder(*make_templates(classes, per_class=per_class, image_size=size), data)
    train = ["--dataset", "imagefolder", "--image-size", size, "--epochs", 1, "--backbone", "conv"]
    run = folder / "run"
    train_summary([*train, "--data-root", data, "--quiet"], "class", run)
    report = herd_cli("report", "--run", run, "--out", out, "--quiet", quiet=True)
    files = sum(1 for p in out.rglob("*") if p.is_file())
    sweep = ["sweep", "--run", run, "--class", "1", "--out", out, "--quiet"]
    herd_cli(*sweep, quiet=True)  # fits the post-hoc decoder
    return ClassScaling(classes, report, files, herd_cli(*sweep, quiet=True))
