"""Classifier side at many classes and against Concept Whitening (issue 29).

Two tables, each trained per setting and seed and scored on every test image with the registry's
metrics:

* ``--table concepts``: on digits and on the generated 100-class set (``--dataset templates``), all
  with a decoder (for image sweep specificity), `--reg none`, the capsule control (`--head
  capsule`), Concept Whitening (`--reg concept-whitening`) and class HeRD: accuracy, concept purity
  (activation and Hessian AUC), both Hessian purity views and image sweep specificity, with class
  HeRD paired against each baseline.
* ``--table scale``: the 100-class set at the default budget (no decoder), `--reg none` against
  class HeRD: accuracy, both purity views and their spread over the classes, and issue 29's targets.

    python scripts/efficacy_concepts.py --table concepts [--seeds 0 1 2] [--backbone resnet18]
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import torch

from herd_cls import benchmarking as bench
from herd_cls.analysis.runs import score_test_split
from herd_cls.analysis.scores import METRICS

SPEC = bench.spec("efficacy_concepts")
STORE = bench.ResultStore(bench.ROOT / "reports" / "benchmark_efficacy_concepts.json", "c1")


def measure(fields: dict, overrides: dict, folder: Path) -> dict:
    """``fields`` and the registry's metrics on every test image (purity from exact |H| of the
    classifier's loss)."""
    run = bench.trained_run(folder, overrides, "cuda" if torch.cuda.is_available() else "cpu")
    scored = score_test_split(run, SPEC["metrics"])
    return {
        **fields,
        "scores": {
            k: None if s is None else {"overall": s.overall, "per_class": s.per_class}
            for k, s in scored.scores.items()
        },
        "train_seconds": run.summary["train_seconds"],
        "purity_method": scored.purity.method,
    }


def jobs(table: str, backbone: str, seeds, settings=None, data=None):
    """The runs of ``table`` (only ``settings`` and ``data`` if given)."""
    parts = SPEC[table]
    for name, data_overrides in parts["data"].items():
        for label, overrides in parts["rows"].items():
            if (settings and label not in settings) or (data and name not in data):
                continue
            for seed in seeds:
                config = {**data_overrides, **parts["shared"], **overrides}
                config.update(backbone=backbone, seed=seed)
                fields = {"data": name, "setting": label, "seed": seed}
                key = STORE.key(table, backbone, name, label, f"seed {seed}")
                yield bench.Job(key, config, partial(measure, fields, config))


def report(key: str, r: dict) -> str:
    scores = {m: s["overall"] for m, s in r["scores"].items() if s is not None}
    return f"{key}: " + ", ".join(f"{m} {v:.3f}" for m, v in scores.items())


def overall(metric: str) -> tuple[tuple, str]:
    """A seed_table column: the metric's overall score, under its label in the registry."""
    return ("scores", metric, "overall"), METRICS.get(metric).label


CONCEPT_COLUMNS = [overall(m) for m in SPEC["metrics"]]


def concepts_page(runs: list[dict], backbone: str) -> str:
    rows, lines = {}, []
    for name in SPEC["concepts"]["data"]:
        by = bench.group([r for r in runs if r["data"] == name], order=SPEC["concepts"]["rows"])
        rows.update({(name, label): rs for label, rs in by.items()})
        targets = SPEC["concepts"]["targets"]
        lines += [bench.check(by, {**t, "name": f"{name}: {t['name']}"}) for t in targets]
    return bench.page(
        f"{backbone} with a decoder, 12 epochs; every test image; `python "
        "scripts/efficacy_concepts.py --table concepts`,",
        runs,
        bench.seed_table(rows, CONCEPT_COLUMNS, lead=("data",)),
        "Class HeRD against each baseline (issue 29's target: at or above at equal accuracy):",
        bench.verdicts(*lines),
    )


def quantiles(metric: str):
    """A seed_table column: min / q1 / median over the classes of the seed-mean per class."""
    return lambda rs: " / ".join(
        f"{q:.2f}"
        for q in np.quantile(bench.per_class(rs, ("scores", metric, "per_class")), [0, 0.25, 0.5])
    )


def share_at_least_0_9(records: list[dict]) -> float:
    """Share of classes whose median image keeps at least 0.9 of its |H| in its own block."""
    return float(
        np.mean(bench.per_class(records, ("scores", "image_purity_median", "per_class")) >= 0.9)
    )


SCALE_COLUMNS = [
    overall("accuracy"),
    overall("block_purity"),
    (quantiles("block_purity"), "class means: min / q1 / median"),
    (quantiles("image_purity_median"), "median image per class: min / q1 / median"),
    (lambda rs: f"{share_at_least_0_9(rs):.2f}", "classes with median image ≥ 0.9"),
    ("train_seconds", "train s"),
]


def scale_page(runs: list[dict], backbone: str) -> str:
    rows = bench.group(runs, order=SPEC["scale"]["rows"])
    statistics = {"classes with median image ≥ 0.9": share_at_least_0_9}
    targets = [bench.check(rows, t, statistics) for t in SPEC["scale"]["targets"]]
    return bench.page(
        f"`--dataset templates` (100 generated classes, 60 images each, 32x32), {backbone}, the "
        "default budget (12 epochs, block head, no decoder); purity from exact |H| on every test "
        "image, seed means per class. `python scripts/efficacy_concepts.py --table scale`,",
        runs,
        bench.seed_table(rows, SCALE_COLUMNS),
        "Targets (issue 29):",
        bench.verdicts(*targets),
    )


def main() -> None:
    parser = bench.seeds_parser(__doc__)
    parser.add_argument("--table", choices=["concepts", "scale"], default="concepts")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--settings", nargs="+", help="train only these rows (default: all)")
    parser.add_argument("--data", nargs="+", help="train only on these data sets (default: all)")
    args = parser.parse_args()
    if not args.publish_only:
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 1)))
        STORE.fill(jobs(args.table, args.backbone, args.seeds, args.settings, args.data), report)
    runs = STORE.runs(jobs(args.table, args.backbone, args.seeds))
    if runs:
        page = concepts_page if args.table == "concepts" else scale_page
        bench.publish(f"benchmark_efficacy_{args.table}", page(runs, args.backbone))


if __name__ == "__main__":
    main()
