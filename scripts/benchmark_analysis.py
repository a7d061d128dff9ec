"""Time the analysis commands on the default run: sweep, attribute, report and robustness.

Targets: `herd-cls sweep --class 3` at most 20 s the first time (it fits the post-hoc decoder) and
at most 10 s after that (sweeps issue), `herd-cls report` at most 60 s (analysis issue), `herd-cls
robustness` at most 60 s (robustness issue), on a 2-core CPU, after the default `herd-cls train
--backbone resnet18 --reg class`. Each command is timed as a whole process (Python start-up and
imports included), best and worst of --repeats runs. Writes reports/benchmark_analysis.md and the
matching block of docs/performance.md.

    python scripts/benchmark_analysis.py [--run RUN_DIR] [--repeats 3]
    python scripts/benchmark_analysis.py --classes 10 100 1000   # many classes (issue 29)

``--classes``: for each class count K, a generated image folder (K classes of 12 32x32 images: a
random template per class plus noise) is trained for one epoch (conv backbone, class HeRD) and
`herd-cls report` and `herd-cls sweep` are timed on it, with the files the report writes and each
process's peak memory; targets: the report at 100 classes at most 2x the 10-class time, at 1000
classes under 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from herd_cls import benchmarking as bench


TARGETS = {
    "first sweep": 20.0,
    "sweep": 10.0,
    "attribute": None,
    "report": 60.0,
    "robustness": 60.0,
}


def image_folder(
    root: Path, classes: int, per_class: int = 12, side: int = 32, seed: int = 0
) -> Path:
    """``classes`` class folders of ``per_class`` PNGs: each class a random template, each image it
    plus noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c:04d}"
        folder.mkdir(parents=True)
        template = rng.uniform(0, 255, (side, side, 3))
        for i in range(per_class):
            image = np.clip(template + rng.normal(0, 40, template.shape), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{i}.png")
    return root


def timed_cli(*args: str) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of ``herd-cls ARGS`` in a process of its own; an
    error stops."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "herd_cls", *map(str, args)], stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"herd-cls {' '.join(map(str, args))} failed")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def many_classes(counts: list[int]) -> None:
    rows, seconds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in counts:
            data = image_folder(Path(tmp) / f"data{k}", k)
            bench.herd_cli(
                "train",
                "--dataset",
                "imagefolder",
                "--data-root",
                data,
                "--image-size",
                "32",
                "--epochs",
                "1",
                "--backbone",
                "conv",
                "--out-dir",
                Path(tmp) / "runs",
                "--name",
                f"k{k}",
                "--quiet",
                stdout=subprocess.DEVNULL,
            )
            out, run = Path(tmp) / f"report{k}", Path(tmp) / "runs" / f"k{k}"
            seconds[k], memory = timed_cli("report", "--run", run, "--out", out, "--quiet")
            files = sum(1 for p in out.rglob("*") if p.is_file())
            # fits the post-hoc decoder
            timed_cli("sweep", "--run", run, "--class", "1", "--out", out, "--quiet")
            sweep_s, sweep_mb = timed_cli(
                "sweep", "--run", run, "--class", "1", "--out", out, "--quiet"
            )
            target = {
                100: "≤ 2x the 10-class time: "
                f"{'met' if 10 in seconds and seconds[k] <= 2 * seconds[10] else 'MISSED'}",
                1000: f"≤ 300 s: {'met' if seconds[k] <= 300 else 'MISSED'}",
            }.get(k, "–")
            rows.append(
                [
                    k,
                    f"{seconds[k]:.1f}",
                    f"{memory:.0f}",
                    files,
                    target,
                    f"{sweep_s:.1f}",
                    f"{sweep_mb:.0f}",
                ]
            )
    md = (
        "`herd-cls report` (default `--classes worst`) and `herd-cls sweep --class 1` (default "
        "`--dims auto`, the post-hoc decoder already fitted) on generated image folders of K "
        "classes x 12 images (32x32), each trained one epoch (conv backbone, class HeRD); whole "
        "process, one run each, peak resident memory of the process; `python "
        f"scripts/benchmark_analysis.py --classes {' '.join(map(str, counts))}` at "
        f"{bench.provenance()}.\n\n"
        + bench.markdown_table(
            [
                "classes",
                "report s",
                "report peak MB",
                "files written",
                "target",
                "sweep s",
                "sweep peak MB",
            ],
            rows,
        )
        + "\n"
    )
    bench.publish("benchmark_analysis_classes", md)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", default=None, help="a trained default run (default: train one now)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--classes", type=int, nargs="+", help="time the report at these class counts instead"
    )
    args = parser.parse_args()
    if args.classes:
        return many_classes(args.classes)
    with tempfile.TemporaryDirectory() as tmp:
        run = bench.readme_run(args.run, Path(tmp) / "default", "--quiet")
        commands = {
            "first sweep": ["sweep", "--class", "3"],
            "sweep": ["sweep", "--class", "3"],
            "attribute": ["attribute"],
            "report": ["report"],
            "robustness": ["robustness"],
        }
        rows = []
        for name, cmd in commands.items():
            times = []
            for _ in range(args.repeats):
                # a run as train leaves it: no post-hoc decoder cached yet
                if name == "first sweep":
                    for cached in Path(run).glob("posthoc_decoder.*"):
                        cached.unlink()
                t0 = time.perf_counter()
                bench.herd_cli(
                    *cmd, "--run", run, "--out", Path(tmp) / "out", stdout=subprocess.DEVNULL
                )
                times.append(time.perf_counter() - t0)
            target = TARGETS[name]
            verdict = "–" if target is None else ("met" if max(times) <= target else "MISSED")
            label = f"`herd-cls {' '.join(cmd)}`" + (
                " (first: fits the post-hoc decoder)" if name == "first sweep" else ""
            )
            rows.append(
                [
                    label,
                    f"{min(times):.1f}",
                    f"{max(times):.1f}",
                    "–" if target is None else f"≤ {target:.0f}",
                    verdict,
                ]
            )
    md = (
        f"Analysis commands on the default digits run, {args.repeats} runs each, whole process; "
        f"`python scripts/benchmark_analysis.py` at {bench.provenance()}.\n\n"
        + bench.markdown_table(["command", "best s", "worst s", "target s", ""], rows)
        + "\n"
    )
    bench.publish("benchmark_analysis", md)


if __name__ == "__main__":
    main()
