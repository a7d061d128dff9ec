"""Where benchmark numbers come from: provenance, the resumable result store, the runs.

* Provenance: :func:`commit` and :func:`provenance` (commit, time, machine, torch), stamped on every
  table.
* :class:`ResultStore`: one JSON file of results per benchmark part, one record per key. It resumes
  (finished keys are skipped), saves atomically after each run, ends every key with the part's
  protocol tag and stores in every record a fingerprint of the settings it was measured with, so
  that a run whose settings have changed since is measured again rather than silently reused.
* Runs: :func:`spec` (a benchmark's rows, from configs/benchmarks/), :func:`trained_run`,
  :func:`built_model` (untrained), :func:`training_step` (one step of it on synthetic images),
  :func:`throughputs` (its images/s without and with the regularizer), :func:`readme_run` and
  :func:`seeds_parser`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from .timing import herd_cli


# the checkout the package runs from (an editable install, as README's first command makes)
ROOT = Path(__file__).resolve().parents[2]


# provenance


def _git(*args) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "?"


def commit() -> str:
    """The short commit of the code, with ``+uncommitted changes`` when tracked code (the package,
    scripts, configs, packaging) differs from it; ``BENCH_COMMIT`` where the code runs without its
    git folder (a copy on a GPU machine). The benchmarks' outputs (reports/, docs, README) change
    while they run and do not count."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    code = ["herd_cls", "scripts", "configs", "setup.cfg", "pyproject.toml"]
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *code)
    dirty = "+uncommitted changes" if status else ""
    return _git("rev-parse", "--short", "HEAD") + dirty


def provenance() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"commit {commit()}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} "
        f"{os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}, {torch.get_num_threads()} "
        "threads"
    )


def machine() -> str:
    """The machine a run is measured on: its GPU, or its CPU count."""
    import torch

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.machine()} {os.cpu_count()} CPU cores{gpu}, torch {torch.__version__}"


def stamp(records: Iterable[dict]) -> str:
    """ "runs at <their commits> on <their machines>, table at <provenance>" for a table of saved
    records (records saved before machines were recorded name none)."""
    records = list(records)
    machines = sorted({r["machine"] for r in records if "machine" in r})
    on = f" on {'; '.join(machines)}" if machines else ""
    return (
        f"runs at {', '.join(sorted({r['commit'] for r in records}))}{on}, table at {provenance()}"
    )


# the result store


def fingerprint(settings) -> str:
    """A short hash of a run's settings (anything JSON-able)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Job(NamedTuple):
    key: str
    settings: object  # what the run is measured with; its fingerprint is saved with the record
    # called with a fresh scratch folder for the run, deleted afterwards
    measure: Callable[[Path], dict]


class ResultStore:
    """Records of a benchmark's runs in one JSON file: {key: record}.

    A key is the run's parts joined by " | ", ending with the protocol tag (bump it when training or
    scoring changes). A record saved with a settings fingerprint counts only while the settings
    match; records saved before fingerprints existed count as their key says.
    """

    def __init__(self, path: Path, protocol: str):
        self.path, self.protocol = Path(path), protocol

    def key(self, *parts) -> str:
        return " | ".join([*map(str, parts), self.protocol])

    def load(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    @staticmethod
    def current(record: dict | None, settings) -> bool:
        return record is not None and record.get(
            "fingerprint", fingerprint(settings)
        ) == fingerprint(settings)

    def fill(self, jobs: Iterable[Job], report: Callable[[str, dict], str] | None = None) -> None:
        """Measure every job without a current record, saving the file after each."""
        code = commit()
        for job in jobs:
            if self.current(self.load().get(job.key), job.settings):
                continue
            with tempfile.TemporaryDirectory() as scratch:
                record = {
                    **job.measure(Path(scratch) / "run"),
                    "commit": code,
                    "machine": machine(),
                    "fingerprint": fingerprint(job.settings),
                }
            saved = self.load()  # re-read before writing: parallel invocations share the file
            saved[job.key] = record
            from herd_cls.files import atomic_write

            atomic_write(self.path, json.dumps(saved, indent=1) + "\n")
            print(report(job.key, record) if report else job.key, flush=True)

    def runs(self, jobs: Iterable[Job]) -> list[dict]:
        """The current records of ``jobs`` (measured with the settings they have now), in the file's
        order; stale ones are named."""
        wanted, out = {job.key: job.settings for job in jobs}, []
        for key, record in self.load().items():
            if key in wanted:
                if self.current(record, wanted[key]):
                    out.append(record)
                else:
                    print(f"left out, measured with other settings (run it again): {key}")
        return out


def spec(name: str) -> dict:
    """configs/benchmarks/<name>.yaml: a benchmark's fixed settings and its rows of config
    overrides (plain YAML data, read with ``safe_load``)."""
    import yaml

    return yaml.safe_load((ROOT / "configs" / "benchmarks" / f"{name}.yaml").read_text())


def trained_run(folder: Path, overrides: dict, device: str = "cpu"):
    """The run of ``overrides`` in ``folder``: reused when finished, else (re)trained there; loaded
    on ``device``."""
    from herd_cls import load_run
    from herd_cls.config import load_config
    from herd_cls.train import train

    folder = Path(folder)
    if not (folder / "summary.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)  # an interrupted run: train it again
        train(
            load_config(
                overrides={**overrides, "out_dir": str(folder.parent), "name": folder.name}
            ),
            progress=False,
        )
    return load_run(folder, device)


def built_model(overrides: dict, num_classes: int, in_chans: int, image_size: int):
    """(resolved config, untrained model) that ``herd-cls train`` builds for ``overrides`` on
    images (in_chans, image_size, image_size) of ``num_classes`` classes; no data is read."""
    from herd_cls.config import Config
    from herd_cls.data import DataInfo
    from herd_cls.run import build

    info = DataInfo(num_classes, [str(c) for c in range(num_classes)], in_chans, image_size)
    return build(Config(**{**overrides, "num_classes": num_classes}).validate(), info, None, None)


def device_input(overrides: dict, image_size: int) -> tuple[int, int]:
    """(channels, side) of the images :func:`training_step` feeds: 1 channel of at most 64 pixels
    to the Burgess autoencoder (its shapes), else 3 channels of ``image_size``."""
    return (1, min(image_size, 64)) if overrides.get("backbone") == "burgess" else (3, image_size)


def training_step(
    overrides: dict, device: str, batch: int, image_size: int, amp: bool, compiled: bool
) -> Callable[[], dict]:
    """One optimiser step (AdamW) of the model ``herd-cls train`` builds for ``overrides`` (10
    classes), its regularizer at full weight, on one fixed batch of synthetic images of
    :func:`device_input`: what training pays per batch. On CUDA the model is channels-last;
    ``compiled`` compiles the backbone. The step returns its loss terms."""
    import torch

    from herd_cls.objective import Forward, batch_losses
    from herd_cls.regularizers import create_regularizer

    in_chans, size = device_input(overrides, image_size)
    cfg, model = built_model(overrides, 10, in_chans, size)
    dev = torch.device(device)
    model = model.to(dev)
    model = model.to(memory_format=torch.channels_last) if dev.type == "cuda" else model
    reg = create_regularizer(cfg, model, 10_000).to(dev) if cfg.reg != "none" else None
    forward = Forward(model)
    if compiled:
        model.backbone = torch.compile(model.backbone)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, in_chans, size, size, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)

    def step() -> dict:
        out = batch_losses(model, cfg, x, y, torch.bfloat16 if amp else None, reg, 1.0, forward)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        return out

    return step


def throughputs(
    overrides: dict,
    regularised: dict,
    device: str,
    batch: int,
    image_size: int,
    amp: bool,
    compiled: bool,
    steps: int,
) -> dict[str, tuple[float, float]]:
    """{"none": ..., regularised["reg"]: ...}: (images/s, peak MB) of ``steps`` timed
    :func:`training_step` calls for ``overrides`` with ``--reg none`` and with the ``regularised``
    overrides, each model built from seed 0."""
    import torch

    from .timing import images_per_second

    rates = {}
    for reg, extra in (("none", {"reg": "none"}), (regularised["reg"], regularised)):
        torch.manual_seed(0)
        step = training_step({**overrides, **extra}, device, batch, image_size, amp, compiled)
        rates[reg] = images_per_second(step, batch, steps, device)
    return rates


def readme_run(run: str | None, folder: Path, *options: str) -> str:
    """``run`` if given, else the README's default run (``train --backbone resnet18 --reg class``)
    trained into ``folder``."""
    if run is None:
        where = ["--out-dir", folder.parent, "--name", folder.name]
        herd_cli(*"train --backbone resnet18 --reg class".split(), *where, *options)
        run = str(folder)
    return run


def seeds_parser(description: str, seeds=(0, 1, 2)) -> argparse.ArgumentParser:
    """The options every efficacy benchmark takes: ``--seeds`` and ``--publish-only``."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    parser.add_argument(
        "--publish-only", action="store_true", help="write the tables from the saved runs"
    )
    return parser
