"""Classifier side of the efficacy benchmark: is every digit's curvature in its own latent block?

Trains, per backbone and seed, each row of configs/benchmarks/efficacy_digits.yaml (``--reg none``,
the shipped class default and the formulations worth showing on digits; with ``--prelogits``, HeRD
on a timm backbone's own pre-logit features), then scores the whole test split: accuracy, and the
block purity of the classifier loss's exact per-image Hessians in both views of
:mod:`herd_cls.purity`: the class mean (share of a class's summed |H| inside its block) and per
image (each image's own-block share; per class its mean, median and share of images at or above
0.5). Every run is saved to reports/benchmark_efficacy_digits.json under its own key, so the part
resumes; the tables and the target verdicts go to reports/ and docs/efficacy.md.

    python scripts/efficacy_digits.py [--prelogits] [--seeds 0 1 2] [--backbones resnet18 conv]
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from herd_cls import benchmarking as bench
from herd_cls.analysis.runs import score_test_split
from herd_cls.config import Config
from herd_cls.curvature import latent_hessian
from herd_cls.purity import image_share

SPEC = bench.spec("efficacy_digits")
SHIPPED = f"class, {Config.variant} (shipped)"
assert SPEC["classifier"]["rows"][SHIPPED]["variant"] == Config.variant, "the shipped row moved"
assert all(t["label"] == SHIPPED for t in SPEC["classifier"]["targets"]), "a target lost its row"
# "d1" ends every key: bump it when training or scoring changes, so older saved runs are not mixed
# in
STORE = bench.ResultStore(bench.ROOT / "reports" / "benchmark_efficacy_digits.json", "d1")


def torch_ce_medians(model, data: dict, layout) -> list[float]:
    """Per class, the median image's own purity as the Hessians of float32 ``F.cross_entropy`` read
    it (the measurement before herd_cls rewrote the loss: it loses the own block of confident
    images)."""
    loss = lambda out, y: F.cross_entropy(out, y, reduction="none")
    H = latent_hessian(model.classify, data["z"], data["y"], loss)
    share = image_share(H.detach(), data["y"], layout, empty=float("nan"))
    medians = [share[(data["y"] == c) & ~share.isnan()] for c in range(layout.num_classes)]
    return [float(m.median()) if len(m) else float("nan") for m in medians]


def measure(fields: dict, overrides: dict, folder: Path) -> dict:
    """Accuracy and both purity views on every test image (exact Hessians of the classifier's
    CE)."""
    run = bench.trained_run(folder, overrides)
    names = SPEC["per_class_metrics"]
    scored = score_test_split(run, ["accuracy", *names], "exact")
    return {
        **fields,
        "test_accuracy": scored.scores["accuracy"].overall,
        **{f"{name}_per_class": scored.scores[name].per_class for name in names},
        "image_purity_median_torch_ce_per_class": torch_ce_medians(
            run.model, scored.test, run.layout
        ),
        "test_images": len(scored.purity.labels),
        "purity_method": scored.purity.method,
        "train_seconds": run.summary["train_seconds"],
        "chance": run.layout.chance(),
        "latent_dim": run.layout.latent_dim,
    }


def jobs(part: str, backbones, labels, seeds):
    """Every run of ``part``, the rows the verdicts need first."""
    rows = {**SPEC[part]["rows"], **SPEC[part].get("candidates", {})}
    table = "pre-logits" if part == "pre-logits" else "classifier"
    for label in labels:
        for backbone in backbones:
            for seed in seeds:
                settings = {**SPEC[part]["base"], "backbone": backbone, **rows[label]}
                fields = {"backbone": backbone, "setting": label, "seed": seed}
                measured = partial(measure, fields, {**settings, "seed": seed})
                yield bench.Job(
                    STORE.key(table, backbone, label, f"seed {seed}"), settings, measured
                )


def report(key: str, r: dict) -> str:
    return (
        f"{key}: accuracy {r['test_accuracy']:.3f}, class purity "
        f"{np.mean(r['block_purity_per_class']):.3f} (worst "
        f"{min(r['block_purity_per_class']):.2f}), worst class's median image "
        f"{min(r['image_purity_median_per_class']):.2f}, {r['train_seconds']:.0f} s"
    )


def class_mean(records: list[dict]) -> float:
    return float(np.mean([np.mean(r["block_purity_per_class"]) for r in records]))


BLOCK, MEDIAN = "block_purity_per_class", "image_purity_median_per_class"
COLUMNS = [
    ("test_accuracy", "test accuracy"),
    (lambda rs: bench.mean_std([np.mean(r[BLOCK]) for r in rs]), "class-mean purity"),
    (bench.formatted(bench.lowest_class(BLOCK)), "lowest class"),
    (bench.each_seed_lowest(BLOCK), "lowest class per seed"),
    (
        bench.formatted(lambda rs: bench.per_class(rs, "image_purity_mean_per_class").mean()),
        "image purity, mean",
    ),
    (bench.formatted(bench.lowest_class(MEDIAN)), "worst class's median image"),
    (bench.each_seed_lowest(MEDIAN), "per seed"),
    (
        bench.formatted(bench.lowest_class("image_purity_at_least_half_per_class")),
        "lowest share ≥ 0.5",
    ),
    (
        bench.formatted(bench.lowest_class("image_purity_median_torch_ce_per_class")),
        "worst median, float32 F.cross_entropy",
    ),
]
PRELOGITS_COLUMNS = [
    ("test_accuracy", "test accuracy"),
    (COLUMNS[1][0], "class-mean purity"),
    (lambda rs: f"{rs[0]['chance']:.4f}", "chance"),
    *COLUMNS[4:6],
    ("train_seconds", "train s"),
]


STATISTICS = {
    "class mean": class_mean,
    "lowest class": bench.lowest_class(BLOCK),
    "lowest median image": bench.lowest_class(MEDIAN),
}


def target_lines(part: str, results: bench.Rows, prefix: str) -> list[str | None]:
    """The spec's targets of ``part`` on each backbone's rows, each name after ``prefix`` (a format
    of backbone and label)."""
    return [
        bench.check(rows, {**t, "name": prefix.format(b, t["label"]) + t["name"]}, STATISTICS)
        for b, rows in bench.nested(results).items()
        for t in SPEC[part]["targets"]
    ]


def classifier_page(results: bench.Rows, seeds) -> str:
    lines = target_lines("classifier", results, "{}: ")
    classes = [
        [backbone, view, *(f"{x:.2f}" for x in bench.per_class(rows[SHIPPED], field))]
        for backbone, rows in bench.nested(results).items()
        if SHIPPED in rows
        for view, field in (("class mean", BLOCK), ("median image", MEDIAN))
    ]
    records = [r for rs in results.values() for r in rs]
    return bench.page(
        f"`python scripts/efficacy_digits.py`, seeds {list(seeds)},",
        records,
        bench.seed_table(results, COLUMNS, lead=("backbone",)),
        f"Per class, `{SHIPPED}`, seed means:",
        bench.markdown_table(
            ["backbone", "view", *map(str, range(len(records[0][BLOCK])))], classes
        ),
        "Targets (efficacy issue; seed means, per class where it says so), the shipped default "
        "against `--reg none`:",
        bench.verdicts(*lines),
    )


def prelogits_page(results: bench.Rows, seeds) -> str:
    """Issue 23's rows and targets, the class default against none with the same head."""
    lines = target_lines("pre-logits", results, "{}, {}: ")
    return bench.page(
        f"`python scripts/efficacy_digits.py --prelogits`, seeds {list(seeds)},",
        [r for rs in results.values() for r in rs],
        bench.seed_table(results, PRELOGITS_COLUMNS, lead=("backbone",)),
        "Targets (issue 23; seed means), the class default against `--reg none` with the same "
        "head:",
        bench.verdicts(*lines),
    )


def prelogits_summary(results: bench.Rows) -> str:
    """README's line: per backbone, the shipped pre-logits setting (class, block head) against
    none."""
    parts = []
    for backbone, rows in bench.nested(results).items():
        ours, none = rows.get("class, block head"), rows.get("none, block head")
        if ours and none:
            accuracy = lambda rs: np.mean([r["test_accuracy"] for r in rs])
            parts.append(
                f"{backbone} {class_mean(ours):.2f} against none's {class_mean(none):.2f} (every "
                f"class's median image ≥ {bench.lowest_class(MEDIAN)(ours):.2f}; accuracy "
                f"{accuracy(ours):.3f} against {accuracy(none):.3f}; {len(ours)} seeds)"
            )
    return (
        "HeRD on a timm backbone's own pre-logit features (`configs/timm_prelogits.yaml`, block "
        "head, digits), class-mean purity of exact |H|: " + "; ".join(parts) + ". Chance is about "
        "0.01. Tables and targets: "
        "[docs/efficacy.md](docs/efficacy.md#on-a-timm-backbones-own-features---latent-pre-logits-issue-23).\n"
    )


def main() -> None:
    parser = bench.seeds_parser(__doc__)
    parser.add_argument("--prelogits", action="store_true", help="the pre-logits table (issue 23)")
    parser.add_argument("--backbones", nargs="+", help="default: the table's, from its spec")
    parser.add_argument(
        "--settings", nargs="+", help="only these rows (a pre-logits candidate only when named)"
    )
    args = parser.parse_args()
    name = "pre-logits" if args.prelogits else "classifier"
    part = SPEC[name]
    backbones, labels = args.backbones or part["backbones"], args.settings or list(part["rows"])
    if not args.publish_only:
        torch.set_num_threads(1)
        STORE.fill(jobs(name, backbones, labels, args.seeds), report)
    if not args.settings:  # the table also shows the candidates that were run
        labels += list(part.get("candidates", {}))
    order = [(b, label) for b in backbones for label in labels]
    runs = STORE.runs(jobs(name, backbones, labels, args.seeds))
    results = bench.group(runs, ("backbone", "setting"), order)
    if args.prelogits:
        bench.publish("benchmark_efficacy_prelogits", prelogits_page(results, args.seeds))
        bench.publish("benchmark_efficacy_prelogits_summary", prelogits_summary(results))
    else:
        bench.publish("benchmark_efficacy_digits", classifier_page(results, args.seeds))


if __name__ == "__main__":
    main()
