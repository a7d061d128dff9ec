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
import tempfile
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


def many_classes(counts: list[int]) -> None:
    rows, seconds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in counts:
            data, out, run = Path(tmp) / f"data{k}", Path(tmp) / f"report{k}", Path(tmp) / f"k{k}"
            train = "train --dataset imagefolder --image-size 32 --epochs 1 --backbone conv"
            options = ["--data-root", image_folder(data, k), "--out-dir", tmp, "--name", run.name]
            bench.herd_cli(*train.split(), *options, "--quiet", quiet=True)
            report = bench.herd_cli("report", "--run", run, "--out", out, "--quiet", quiet=True)
            seconds[k] = report.seconds
            files = sum(1 for p in out.rglob("*") if p.is_file())
            sweep = ["sweep", "--run", run, "--class", "1", "--out", out, "--quiet"]
            bench.herd_cli(*sweep, quiet=True)  # fits the post-hoc decoder
            swept = bench.herd_cli(*sweep, quiet=True)
            target = {
                100: "≤ 2x the 10-class time: "
                f"{'met' if 10 in seconds and seconds[k] <= 2 * seconds[10] else 'MISSED'}",
                1000: f"≤ 300 s: {'met' if seconds[k] <= 300 else 'MISSED'}",
            }.get(k, "–")
            rows.append(
                [
                    k,
                    f"{report.seconds:.1f}",
                    f"{report.peak_mb:.0f}",
                    files,
                    target,
                    f"{swept.seconds:.1f}",
                    f"{swept.peak_mb:.0f}",
                ]
            )
    columns = ["classes", "report s", "report peak MB", "files written", "target", "sweep s"]
    md = (
        f"`python scripts/benchmark_analysis.py --classes {' '.join(map(str, counts))}` at "
        f"{bench.provenance()}.\n\n"
        + bench.markdown_table([*columns, "sweep peak MB"], rows)
        + "\n"
    )
    bench.publish("benchmark_analysis_classes", md)


COMMANDS = {  # what is timed, as typed after the run is given
    "first sweep": ["sweep", "--class", "3"],
    "sweep": ["sweep", "--class", "3"],
    "attribute": ["attribute"],
    "report": ["report"],
    "robustness": ["robustness"],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", help="a trained default run (default: train one now)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--classes", type=int, nargs="+", help="time the report at these class counts instead"
    )
    args = parser.parse_args()
    if args.classes:
        return many_classes(args.classes)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = bench.readme_run(args.run, Path(tmp) / "default", "--quiet")
        for name, command in COMMANDS.items():
            times = []
            for _ in range(args.repeats):
                if name == "first sweep":  # a run as train leaves it: no post-hoc decoder yet
                    for cached in Path(run).glob("posthoc_decoder.*"):
                        cached.unlink()
                out = ["--run", run, "--out", Path(tmp) / "out"]
                times.append(bench.herd_cli(*command, *out, quiet=True).seconds)
            target = TARGETS[name]
            verdict = "–" if target is None else ("met" if max(times) <= target else "MISSED")
            label = f"`herd-cls {' '.join(command)}`" + (
                " (first: fits the post-hoc decoder)" if name == "first sweep" else ""
            )
            limit = "–" if target is None else f"≤ {target:.0f}"
            rows.append([label, f"{min(times):.1f}", f"{max(times):.1f}", limit, verdict])
    md = (
        f"Analysis commands on the default digits run, {args.repeats} runs each, whole process; "
        f"`python scripts/benchmark_analysis.py` at {bench.provenance()}.\n\n"
        + bench.markdown_table(["command", "best s", "worst s", "target s", ""], rows)
        + "\n"
    )
    bench.publish("benchmark_analysis", md)


if __name__ == "__main__":
    main()
