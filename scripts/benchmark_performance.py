"""What herd_cls costs: curvature, regularised training against plain, and the analysis commands.

Each part is one run on one machine (curvature, train: interleaved repetitions, medians, ratios
taken within the run):
  --part curvature  forward + curvature + penalty + backward per batch of 64, for every method, on
                    linear+CE, MLP+CE, block head+CE, MLP decoder+MSE and conv decoder+MSE at d in
                    8..512, with the peak of extra CPU memory and the probe estimates' purity error
                    against exact (herd_cls.benchmarking.curvature_cost);
  --part train      a training epoch with the penalty on against --reg none (the README default, the
                    conv autoencoder with --wrt both, resnet18 on its 512 pre-logit features), and
                    the purity the trained runs show;
  --part distributed  2 gloo processes against 1 on this machine: throughput, and the README run's
                    accuracy and purity (torchrun issue);
  --part device     training steps on synthetic tensors, --device cuda (or cpu): resnet18 and
                    resnet50 at 224x224, batch 256, --reg none against --reg class, and the conv and
                    Burgess decoders with decoder-side HeRD; bf16 autocast, torch.compile off and
                    on; images/s and peak memory;
  --part analysis   `herd-cls sweep --class 3` (first, fitting the post-hoc decoder, and again),
                    attribute, report and robustness on the README run (or --run), each timed as a
                    whole process, best and worst of --repeats; targets: the first sweep at most
                    20 s and later ones 10 s, the report and robustness 60 s each;
  --part classes    per --classes count K, a generated image folder (K classes of 12 32x32 images,
                    `make_templates`: a template per class, shifted, plus noise) trained one epoch
                    (conv, class HeRD), then `herd-cls report` and `herd-cls sweep` timed with
                    their peak memory and the report's files; targets: 100 classes at most 2x
                    the 10-class time, 1000 under 5 minutes (issue 29).
Writes reports/benchmark_performance_<part>.md (benchmark_performance_device_<device>.md for
--part device, benchmark_analysis[_classes].md for the last two) and the matching blocks of
docs/performance.md.

    python scripts/benchmark_performance.py --part curvature|train|distributed|analysis [--repeats]
    python scripts/benchmark_performance.py --part device --device cuda [--compile off,on]
    python scripts/benchmark_performance.py --part classes [--classes 10 100 1000]
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
from pathlib import Path

import torch

from herd_cls import benchmarking as bench
from herd_cls.benchmarking import command_cost, curvature_cost

DIMS = (8, 16, 32, 64, 128, 512)
MEMORY_DIMS = (16, 128, 512)  # peak memory is measured in a fresh process per cell, at these sizes


def page(note: str, options: str, columns: list[str], rows: list[list]) -> str:
    """A part's published table: ``note``, the command that measured it, where and when, the
    table."""
    command = f"`python scripts/benchmark_performance.py {options}`"
    return f"{note}{command} at {bench.provenance()}.\n\n{bench.markdown_table(columns, rows)}\n"


def curvature_part(repeats: int) -> str:
    torch.manual_seed(0)
    rows = []
    for d in DIMS:
        for name, (plain, costs) in curvature_cost.costs_at(d, repeats, d in MEMORY_DIMS).items():
            cells = [
                f"{c.method} {c.seconds * 1000:.1f} ms ({c.ratio:.1f}x"
                + (f", {c.peak_mb:.0f} MB" if c.peak_mb is not None else "")
                + (f", purity err {c.purity_error:.3f}" if c.purity_error is not None else "")
                + ")"
                for c in costs
            ]
            rows.append([d, name, f"{plain * 1000:.2f}", " · ".join(cells)])
            print(bench.table_row(rows[-1]), flush=True)
    columns = ["d", "head", "plain ms", "method ms (× plain, peak MB, purity err)"]
    return page(f"Median of {repeats} interleaved repetitions. ", "--part curvature", columns, rows)


SPEC = bench.spec("benchmark_performance")
COMMON = ["--epochs", "2", "--warmup", "0", "--ramp", "0", "--quiet"]


def _purity_shown(summary: dict) -> str:
    """The purity a user reads in the trained run's summary.json: value, standard error, method,
    images."""
    return (
        f"{summary['block_purity']:.3f} ± {summary['block_purity_standard_error']:.3f}, "
        f"{summary['purity_method']}, {summary['purity_samples']} images"
    )


def train_part(repeats: int) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, job in SPEC["train"].items():
            options, target = shlex.split(job["options"]), job["target"]
            runs = max(1, int(repeats * job.get("repeats", 1)))
            cost = command_cost.training_cost(options + COMMON, runs, Path(tmp) / str(len(rows)))
            verdict = f"≤ {target}x: {'met' if cost.ratio <= target else 'MISSED'}"
            rows.append(
                [
                    label,
                    runs,
                    f"{cost.none_seconds:.1f}",
                    f"{cost.regularised_seconds:.1f}",
                    f"{cost.ratio:.2f}x",
                    verdict,
                    _purity_shown(cost.summary),
                ]
            )
            print(bench.table_row(rows[-1]), flush=True)
    columns = ["job", "runs", "none s", "class s", "ratio", "target", "purity shown, trained run"]
    return page(
        f"`{' '.join(COMMON)}`, median of the interleaved runs. ", "--part train", columns, rows
    )


def distributed_part(repeats: int) -> str:
    """2 gloo processes with half the batch against 1 process: throughput and the README run's
    numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        cost = command_cost.distributed_cost(repeats, Path(tmp))
    rows = [
        [
            n,
            cost.batch // n,
            f"{cost.seconds(n):.1f}",
            f"{cost.mean(n, 'test_accuracy'):.4f}",
            f"{cost.mean(n, 'block_purity'):.3f}",
        ]
        for n in (1, 2)
    ]
    acc, pur = cost.gap("test_accuracy"), cost.gap("block_purity")
    note = (
        f"{repeats} run(s) each. Throughput of 2 processes: {cost.speedup:.2f}x that of 1. "
        f"Accuracy differs by {acc:.4f} (target ≤ 0.01: {'met' if acc <= 0.01 else 'MISSED'}), "
        f"block purity by {pur:.3f} (target ≤ 0.02: {'met' if pur <= 0.02 else 'MISSED'}). "
    )
    columns = ["processes", "batch per process", "training s", "test accuracy", "block purity"]
    return page(note, "--part distributed", columns, rows)


def device_part(args) -> str:
    rows = []
    for label in args.jobs:
        base, regularised = SPEC["device"][label]["model"], SPEC["device"][label]["regularised"]
        for compiled in args.compile:
            sizes = (args.batch, args.image_size, args.amp, compiled, args.steps)
            rates = bench.throughputs(base, regularised, args.device, *sizes)
            (none_rate, none_mem), (reg_rate, reg_mem) = rates["none"], rates[regularised["reg"]]
            rows.append(
                [
                    label,
                    f"--reg {regularised['reg']}"
                    + (f" --wrt {regularised['wrt']}" if "wrt" in regularised else ""),
                    "on" if compiled else "off",
                    f"{none_rate:.0f}",
                    f"{reg_rate:.0f}",
                    f"{none_rate / reg_rate:.2f}x",
                    f"{none_mem:.0f}",
                    f"{reg_mem:.0f}",
                ]
            )
            print(bench.table_row(rows[-1]), flush=True)
    note = (
        f"`{args.device}`, batch {args.batch}, {args.image_size}x{args.image_size} images, "
        f"{args.steps} timed steps, {'bf16 autocast' if args.amp else 'float32'}. "
    )
    columns = ["job", "regularised", "compile", "none img/s", "regularised img/s", "cost"]
    columns += ["none MB", "regularised MB"]
    return page(note, f"--part device --device {args.device}", columns, rows)


def classes_part(counts: list[int]) -> str:
    rows, seconds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in counts:
            timed = command_cost.class_scaling(k, Path(tmp) / f"k{k}")
            seconds[k] = timed.report.seconds
            target = {
                100: "≤ 2x the 10-class time: "
                f"{'met' if 10 in seconds and seconds[k] <= 2 * seconds[10] else 'MISSED'}",
                1000: f"≤ 300 s: {'met' if seconds[k] <= 300 else 'MISSED'}",
            }.get(k, "–")
            rows.append(
                [
                    k,
                    f"{timed.report.seconds:.1f}",
                    f"{timed.report.peak_mb:.0f}",
                    timed.files,
                    target,
                    f"{timed.sweep.seconds:.1f}",
                    f"{timed.sweep.peak_mb:.0f}",
                ]
            )
    columns = ["classes", "report s", "report peak MB", "files written", "target", "sweep s"]
    counted = " ".join(map(str, counts))
    return page("", f"--part classes --classes {counted}", [*columns, "sweep peak MB"], rows)


def analysis_part(repeats: int, run: str | None) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = bench.readme_run(run, Path(tmp) / "default", "--quiet")
        for name, job in SPEC["analysis"].items():
            command, target = job["command"], job.get("target")
            typed = [*shlex.split(command), "--out", Path(tmp) / "out"]
            times = command_cost.command_seconds(typed, run, repeats, name == "first sweep")
            verdict = "–" if target is None else ("met" if max(times) <= target else "MISSED")
            label = f"`herd-cls {command}`" + (
                " (first: fits the post-hoc decoder)" if name == "first sweep" else ""
            )
            limit = "–" if target is None else f"≤ {target:.0f}"
            rows.append([label, f"{min(times):.1f}", f"{max(times):.1f}", limit, verdict])
    note = f"Analysis commands on the default digits run, {repeats} runs each, whole process; "
    return page(note, "--part analysis", ["command", "best s", "worst s", "target s", ""], rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = ["curvature", "train", "distributed", "device", "analysis", "classes"]
    parser.add_argument("--part", choices=parts, required=True)
    parser.add_argument(
        "--repeats", type=int, help="default: 5 (curvature, train), 1 (distributed), 3 (analysis)"
    )
    parser.add_argument(
        "--print-only", action="store_true", help="print the table, publish nothing"
    )
    device = parser.add_argument_group("--part device")
    device.add_argument("--device", default="cuda", help="cuda or cpu")
    jobs = list(SPEC["device"])
    device.add_argument("--jobs", nargs="+", default=jobs, choices=jobs)
    device.add_argument(
        "--compile",
        default="off,on",
        type=lambda v: [x == "on" for x in v.split(",")],
        help="torch.compile of the backbone: off, on or off,on",
    )
    device.add_argument("--batch", type=int, default=256)
    device.add_argument("--image-size", type=int, default=224)
    device.add_argument("--steps", type=int, default=10)
    device.add_argument(
        "--no-amp", dest="amp", action="store_false", help="float32 instead of bf16 autocast"
    )
    analysis = parser.add_argument_group("--part analysis and classes")
    analysis.add_argument("--run", help="a trained README run to time (default: train one now)")
    analysis.add_argument(
        "--classes", type=int, nargs="+", default=[10, 100, 1000], help="class counts to time"
    )
    args = parser.parse_args()
    table = {
        "curvature": lambda: curvature_part(args.repeats or 5),
        "train": lambda: train_part(args.repeats or 5),
        "distributed": lambda: distributed_part(args.repeats or 1),
        "device": lambda: device_part(args),
        "analysis": lambda: analysis_part(args.repeats or 3, args.run),
        "classes": lambda: classes_part(args.classes),
    }[args.part]()
    published = {
        "device": f"benchmark_performance_device_{args.device}",
        "analysis": "benchmark_analysis",
        "classes": "benchmark_analysis_classes",
    }
    if args.print_only:
        return print(table)
    bench.publish(published.get(args.part, f"benchmark_performance_{args.part}"), table)


if __name__ == "__main__":
    main()
