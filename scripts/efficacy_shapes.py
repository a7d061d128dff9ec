"""Efficacy on dSprites-like shapes, scored against their generative factors.

Two tables, every run on the same footing (configs/benchmarks/efficacy_shapes.yaml): the Burgess
4-conv autoencoder, BCE, batch 128, lr 1e-3, a budget in steps, each method at its usual weight.

* ``thesis`` (unsupervised, d = 10): the plain autoencoder, universal HeRD on it, the Hessian
  Penalty, OroJaR, beta-VAE, beta-TCVAE, FactorVAE and an untrained encoder as the floor; overall
  MIG, DCI disentanglement and SAP against shape, scale, orientation, x and y, and reconstruction.
* ``class`` (class = shape, 3 blocks of 4 dims, block head): per-class MIG over all dims and inside
  the class's own block, and image sweep specificity (the share of a class's image change that its
  own block makes).

Scores are measured on 10000 freshly generated held-out shapes (seed 1), 20 bins.

    python scripts/efficacy_shapes.py [--seeds 0 1 2 3 4] [--tables thesis class] [--steps 3000]
"""

from __future__ import annotations

from functools import cache, partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from herd_cls import benchmarking as bench
from herd_cls.analysis.sweep import decoded_block_effect
from herd_cls.builtin_data import make_shapes
from herd_cls.disentanglement import disentanglement_scores, factor_scores
from herd_cls.metrics import sweep_specificity

SPEC = bench.spec("efficacy_shapes")
TABLES = ("thesis", "class")
UNIVERSAL = "universal HeRD, decoder output"  # the shipped forms: the targets' rows
CLASS_HERD = "class HeRD (decoder + classifier Hessian)"
RANDOM = "random encoder"  # scored untrained
DEFAULT_STEPS = SPEC["steps"]  # the tables' budget
STORE = bench.ResultStore(bench.ROOT / "reports" / "benchmark_efficacy_shapes.json", "s1")


@cache
def held_out() -> tuple[torch.Tensor, np.ndarray, dict[str, np.ndarray]]:
    images, labels, factors = make_shapes(10000, 32, seed=1)
    return images, labels.numpy(), factors


@torch.no_grad()
def encode(model, images: torch.Tensor) -> tuple[np.ndarray, float]:
    """(z (N, d), mean BCE per pixel of the reconstructions) of the held-out images."""
    model.eval()
    zs, bce = [], 0.0
    for x in images.split(500):
        zs.append(model.encode(x))
        decoded = model.decode(zs[-1]).clamp(1e-6, 1 - 1e-6)
        bce += F.binary_cross_entropy(decoded, x, reduction="sum").item()
    return torch.cat(zs).numpy(), bce / images.numel()


def thesis_scores(model, data, layout=None) -> dict:
    images, labels, factors = data
    z, recon = encode(model, images)
    scores = factor_scores(z, {"shape": labels.astype(float), **factors})
    return {**{k: scores[k] for k in ("mig", "dci_disentanglement", "sap")}, "recon_bce": recon}


def class_scores(model, data, layout) -> dict:
    images, labels, factors = data
    z, recon = encode(model, images)
    masks = [m.numpy() for m in layout.masks]  # per class MIG, over all dims and its own block
    per_class = disentanglement_scores(z, factors, labels, blocks=masks)["per_class"]
    all_dims, own = (
        [per_class[str(c)][k] for c in range(layout.num_classes)] for k in ("mig", "mig_own_block")
    )
    zt, yt = torch.from_numpy(z[:2000]), torch.from_numpy(labels[:2000])
    effect = decoded_block_effect(model, zt, yt, layout, torch.from_numpy(z).std(0))
    specificity = sweep_specificity(effect)
    return {
        "class_mig_all_dims": float(np.mean(all_dims)),
        "class_mig_own_block": float(np.mean(own)),
        "class_mig_own_block_per_class": own,
        "image_sweep_specificity": specificity["sweep_specificity"],
        "image_sweep_specificity_per_class": specificity["sweep_specificity_per_class"],
        "recon_bce": recon,
    }


def settings_of(table: str, label: str, steps: int) -> dict:
    overrides = SPEC[table]["rows"][label]
    base = {**SPEC["common"], **SPEC[table]["base"]}
    return (
        {**base, "untrained": True} if overrides is None else {**base, **overrides, "steps": steps}
    )


def measure(table: str, label: str, seed: int, settings: dict, folder: Path) -> dict:
    scores = class_scores if table == "class" else thesis_scores
    data = held_out()
    if settings.get("untrained"):
        torch.manual_seed(seed)
        config = {k: v for k, v in settings.items() if k != "untrained"}
        _, model = bench.built_model(config, num_classes=3, in_chans=1, image_size=32)
        return {"table": table, "setting": label, "seed": seed, **scores(model, data)}
    run = bench.trained_run(folder, {**settings, "seed": seed})
    r = {
        **scores(run.model, data, run.layout),
        "train_seconds": run.summary["train_seconds"],
        "test_accuracy": run.summary["test_accuracy"],
        "live_dims": run.history()[-1].get("decoder_live_dims"),
        "collapse": run.summary.get("decoder_collapse"),
    }
    return {"table": table, "setting": label, "seed": seed, **r}


def jobs(tables, labels, seeds, steps):
    """Every run in ``tables`` (only ``labels`` if given)."""
    for table in tables:
        for label in SPEC[table]["rows"]:
            for seed in seeds if labels is None or label in labels else ():
                key = STORE.key(table, label, f"seed {seed}", f"steps {steps}")
                settings = settings_of(table, label, steps)
                yield bench.Job(key, settings, partial(measure, table, label, seed, settings))


def targets(rows: dict[str, dict]) -> str:
    """The spec's targets, each on the rows of its table that were run."""
    return bench.verdicts(
        *(
            bench.check(rows[t["table"]], {k: v for k, v in t.items() if k != "table"})
            for t in SPEC["targets"]
        )
    )


def summary(thesis: dict, classes: dict) -> str:
    """README's one paragraph: the measured means, named, with no verdict beyond the numbers."""
    parts = [
        f"{label} {bench.mean(thesis, label, 'mig'):.2f}" for label in thesis if label != RANDOM
    ]
    text = "Shapes (dSprites-like, Burgess autoencoder, overall MIG): " + ", ".join(parts) + "."
    if CLASS_HERD in classes:
        own = [
            f"{label} {bench.mean(classes, label, 'class_mig_own_block'):.2f}" for label in classes
        ]
        text += " Class = shape, per-class MIG inside the own block: " + ", ".join(own) + "."
    return (
        text + " Seeds and spread: "
        "[docs/efficacy.md](docs/efficacy.md#shapes-the-baselines-known-results-first-then-herd-against-them).\n"
    )


THESIS_COLUMNS = [("mig", "MIG"), ("dci_disentanglement", "DCI-D"), ("sap", "SAP")]
CLASS_COLUMNS = [
    ("test_accuracy", "accuracy"),
    ("class_mig_all_dims", "per-class MIG, all dims"),
    ("class_mig_own_block", "per-class MIG, own block"),
    ("image_sweep_specificity", "image sweep specificity"),
]
PER_SEED = [
    (bench.each_seed("live_dims"), "live dims (per seed)"),
    (bench.each_seed("train_seconds", "{:.0f}"), "train s (per seed)"),
]
RECON = [("recon_bce", "recon BCE")]


def tables(seeds, steps: int) -> tuple[str, str]:
    """README's paragraph and the page's tables and targets, from the saved runs."""
    rows = {}
    for table in TABLES:
        runs = STORE.runs(jobs([table], None, seeds, steps))
        rows[table] = bench.group(runs, order=SPEC[table]["rows"])
    records = [r for t in rows.values() for rs in t.values() for r in rs]
    return summary(rows["thesis"], rows["class"]), bench.page(
        f"`python scripts/efficacy_shapes.py --steps {steps}`, seeds {seeds}, mean ± std;",
        records,
        "**Benchmark validity and the thesis**:",
        bench.seed_table(rows["thesis"], THESIS_COLUMNS + RECON + PER_SEED),
        "Paired with the autoencoder (the same seeds; mean difference ± its standard error):",
        bench.paired_table(rows["thesis"], "autoencoder", THESIS_COLUMNS),
        "**Class-specific on an autoencoder**:",
        bench.seed_table(rows["class"], CLASS_COLUMNS + RECON + PER_SEED),
        "Paired with none (the same seeds; mean difference ± its standard error):",
        bench.paired_table(rows["class"], "none", CLASS_COLUMNS[2:]),
        f"Targets (issues 22, 28 and the efficacy issue; the shipped rows: {UNIVERSAL} and "
        f"{CLASS_HERD}), computed from the rows above:",
        targets(rows),
    )


def main() -> None:
    parser = bench.seeds_parser(__doc__)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="budget of every run")
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--settings", nargs="+", help="only these row labels (default: all)")
    args = parser.parse_args()
    if not args.publish_only:
        STORE.fill(jobs(args.tables, args.settings, args.seeds, args.steps))
    if args.steps == DEFAULT_STEPS:  # a screen at another budget publishes no table
        paragraph, page = tables(args.seeds, args.steps)
        bench.publish("benchmark_efficacy_shapes", page)
        bench.publish("benchmark_efficacy_shapes_summary", paragraph)


if __name__ == "__main__":
    main()
