"""Efficacy on dSprites-like shapes, scored against their generative factors.

Two tables, every run on the same footing: the 4-conv encoder and decoder of Burgess et al.
(``--backbone burgess``), a Bernoulli likelihood (``--recon-loss bce``), Adam-style training at lr
1e-3, batch 128, a budget counted in steps, and each method's usual weight.

* **Benchmark validity and the thesis** (unsupervised: no classification loss, d = 10): the plain
  autoencoder, universal HeRD on it, the Hessian Penalty, OroJaR, beta-VAE, beta-TCVAE and
  FactorVAE, and an untrained (random) encoder as the floor. Overall MIG, DCI disentanglement and
  SAP against the five factors (shape, scale, orientation, x, y), and the reconstruction error.
* **Class-specific on an autoencoder** (class = shape, 3 blocks of 4 dims, the block head): ``--reg
  none``, beta-TCVAE and class HeRD on the decoder's and classifier's Hessian. Per-class MIG over
  all dims and inside the class's own block, and the image sweep specificity: the share of a class's
  image change that comes from moving its own block rather than another's.

Scores are measured on freshly generated held-out shapes (seed 1), 20 bins, as in the literature.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from herd_cls.benchmarking import (
    seeds_parser,
    ROOT,
    Job,
    ResultStore,
    group,
    herd_cli,
    markdown_table,
    mean_std,
    paired,
    publish,
    stamp,
    trained_run,
    verdict,
)
from herd_cls.analysis.sweep import decoded_block_effect
from herd_cls.builtin_data import make_shapes
from herd_cls.disentanglement import dci, disentanglement_scores, mig, sap
from herd_cls.metrics import sweep_specificity
from herd_cls.models import create_model

COMMON = {
    "dataset": "shapes",
    "backbone": "burgess",
    "decoder": True,
    "recon_loss": "bce",
    "batch_size": 128,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "num_samples": 30000,
    "penalty_samples": 32,
}
THESIS_BASE = {"latent_dim": 10, "shared_dims": 1, "head": "mlp", "alpha_cl": 0.0}
THESIS = {  # label -> overrides; "random encoder" is scored untrained
    "autoencoder": {"reg": "none"},
    "universal HeRD, decoder output": {"reg": "universal", "wrt": "decoder-output"},
    "universal HeRD, decoder hidden layers": {
        "reg": "universal",
        "wrt": "decoder-output",
        "decoder_layers": "hidden",
    },
    "universal HeRD, decoder output, 10x weight": {
        "reg": "universal",
        "wrt": "decoder-output",
        "alpha_reg": 50.0,
    },
    "beta-TCVAE + universal HeRD (decoder output)": {
        "reg": "beta-tcvae,universal",
        "wrt": "decoder-output",
    },
    "Hessian Penalty": {"reg": "hessian-penalty"},
    "OroJaR": {"reg": "orojar"},
    "beta-VAE": {"reg": "beta-vae"},
    "beta-TCVAE": {"reg": "beta-tcvae"},
    "FactorVAE": {"reg": "factor-vae"},
}
CLASS_BASE = {"dims_per_class": 4, "shared_dims": 0, "head": "block", "alpha_cl": 1.0}
CLASS = {
    "none": {"reg": "none"},
    "beta-TCVAE": {"reg": "beta-tcvae"},
    "class HeRD (decoder + classifier Hessian)": {
        "reg": "class",
        "wrt": "both",
    },  # configs/shapes_class.yaml
    "class HeRD (decoder + classifier Hessian), weight 8": {
        "reg": "class",
        "wrt": "both",
        "alpha_reg": 8.0,
    },
    "class HeRD (decoder + classifier Hessian), weight 32": {
        "reg": "class",
        "wrt": "both",
        "alpha_reg": 32.0,
    },
    "class HeRD (decoder output)": {"reg": "class", "wrt": "decoder-output"},
    "class HeRD (decoder output), weight 8": {
        "reg": "class",
        "wrt": "decoder-output",
        "alpha_reg": 8.0,
    },
    "class HeRD (decoder output), weight 32": {
        "reg": "class",
        "wrt": "decoder-output",
        "alpha_reg": 32.0,
    },
    "beta-TCVAE + class HeRD (decoder output), weight 32": {
        "reg": "beta-tcvae,class:32",
        "wrt": "decoder-output",
    },
}
# the shipped form (configs/shapes_universal.yaml): the thesis targets
UNIVERSAL = "universal HeRD, decoder output"
UNIVERSAL_ROWS = (UNIVERSAL,)  # the no-collapse targets
COMPOSITE = "beta-TCVAE + universal HeRD (decoder output)"
CLASS_HERD = "class HeRD (decoder + classifier Hessian)"
GRIDS = {  # seed 0 of these rows draws its latent grid (herd-cls sweep) into docs/images/<name>
    "autoencoder": "grid_autoencoder.png",
    UNIVERSAL: "grid_universal.png",
}
HELD_OUT = 10000
DEFAULT_STEPS = 3000  # the tables' budget; only its runs draw the published grids
RANDOM = "random encoder"  # scored untrained
# "s1" ends every key: bump it when training or scoring changes
STORE = ResultStore(ROOT / "reports" / "benchmark_efficacy_shapes.json", "s1")
TABLES = {"thesis": (THESIS_BASE, {**THESIS, RANDOM: None}), "class": (CLASS_BASE, CLASS)}


def held_out() -> tuple[torch.Tensor, np.ndarray, dict[str, np.ndarray]]:
    images, labels, factors = make_shapes(HELD_OUT, 32, seed=1)
    return images, labels.numpy(), factors


@torch.no_grad()
def encode(model, images: torch.Tensor) -> tuple[np.ndarray, float]:
    """(z (N, d), mean BCE of the reconstructions) of the held-out images."""
    model.eval()
    zs, bce = [], 0.0
    for x in images.split(500):
        z = model.encode(x)
        zs.append(z)
        bce += F.binary_cross_entropy(
            model.decode(z).clamp(1e-6, 1 - 1e-6), x, reduction="sum"
        ).item()
    return torch.cat(zs).numpy(), bce / images.numel()


def thesis_scores(model, data) -> dict:
    images, labels, factors = data
    z, recon = encode(model, images)
    all_factors = {"shape": labels.astype(float), **factors}
    return {
        "mig": mig(z, all_factors),
        "dci_disentanglement": dci(z, all_factors)["disentanglement"],
        "sap": sap(z, all_factors),
        "recon_bce": recon,
    }


def class_migs(
    z: np.ndarray, labels: np.ndarray, factors: dict, layout
) -> tuple[list[float], list[float]]:
    """Per class, MIG over the class's own factors on its own images: over all dims, from
    :func:`disentanglement_scores`, and inside the class's own block of ``layout`` (the library's
    ``mig`` on those columns, with the factors disentanglement_scores chose for the class)."""
    per_class = disentanglement_scores(z, factors, labels)["per_class"]
    classes = range(layout.num_classes)
    own = [
        mig(
            z[labels == c][:, layout.masks[c].numpy()],
            {k: factors[k][labels == c] for k in per_class[str(c)]["factors"]},
        )
        for c in classes
    ]
    return [per_class[str(c)]["mig"] for c in classes], own


def class_scores(model, data, layout) -> dict:
    images, labels, factors = data
    z, recon = encode(model, images)
    all_dims, own = class_migs(z, labels, factors, layout)
    zt = torch.from_numpy(z)
    effect = decoded_block_effect(
        model, zt[:2000], torch.from_numpy(labels[:2000]), layout, zt.std(0)
    )
    spec = sweep_specificity(effect)
    return {
        "class_mig_all_dims": float(np.mean(all_dims)),
        "class_mig_own_block": float(np.mean(own)),
        "class_mig_own_block_per_class": own,
        "image_sweep_specificity": spec["sweep_specificity"],
        "image_sweep_specificity_per_class": spec["sweep_specificity_per_class"],
        "recon_bce": recon,
    }


def draw_grid(folder: Path, name: str) -> str:
    """``herd-cls sweep`` without --class on the run in ``folder`` (3 test images); its grid.png is
    copied to docs/images/``name``; returns that path."""
    from PIL import Image

    herd_cli("sweep", "--run", folder, "--samples", "3", "--out", folder / "report", "--quiet")
    target = ROOT / "docs" / "images" / name
    Image.open(folder / "report" / "sweep_grid" / "grid.png").convert("RGB").save(
        target, optimize=True
    )
    return str(target.relative_to(ROOT))


def random_encoder(seed: int):
    torch.manual_seed(seed)
    return create_model(
        "burgess",
        num_classes=3,
        in_chans=1,
        image_size=32,
        latent_dim=10,
        shared_dims=1,
        head="mlp",
        decoder=True,
    )


def add_arguments(parser) -> None:
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help="training budget of every run, in steps"
    )
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--settings", nargs="+", help="only these row labels (default: all)")
    parser.add_argument(
        "--grids",
        action="store_true",
        help="only redraw the published latent grids: retrain seed 0 of each GRIDS row (CPU "
        "training is deterministic, so it is the table's seed-0 run) and draw it",
    )


def settings_of(table: str, label: str, steps: int) -> dict:
    base, settings = TABLES[table]
    overrides = settings[label]
    if overrides is None:
        return {**COMMON, **base, "untrained": True}
    return {**COMMON, **base, **overrides, "steps": steps}


def measure(table: str, label: str, seed: int, settings: dict, data, folder: Path) -> dict:
    if settings.get("untrained"):
        r = {**thesis_scores(random_encoder(seed), data), "train_seconds": 0.0}
    else:
        run = trained_run(folder, {**settings, "seed": seed})
        r = {
            **(
                class_scores(run.model, data, run.layout)
                if table == "class"
                else thesis_scores(run.model, data)
            ),
            "train_seconds": run.summary["train_seconds"],
            "test_accuracy": run.summary["test_accuracy"],
            "live_dims": run.history()[-1].get("decoder_live_dims"),
            "collapse": run.summary.get("decoder_collapse"),
        }
        if seed == 0 and label in GRIDS and settings.get("steps") == DEFAULT_STEPS:
            r["grid"] = draw_grid(folder, GRIDS[label])
    return {"table": table, "setting": label, "seed": seed, **r}


def cells(tables, labels, seeds, steps):
    """(key, settings, table, label, seed) of every run in ``tables`` (only ``labels`` if given)."""
    for table in tables:
        for label in TABLES[table][1]:
            if labels is None or label in labels:
                for seed in seeds:
                    yield (
                        STORE.key(table, label, f"seed {seed}", f"steps {steps}"),
                        settings_of(table, label, steps),
                        table,
                        label,
                        seed,
                    )


def train_all(seeds: list[int], args) -> None:
    data = held_out()
    STORE.fill(
        (
            Job(key, settings, partial(measure, table, label, seed, settings, data))
            for key, settings, table, label, seed in cells(
                args.tables, args.settings, seeds, args.steps
            )
        ),
        lambda key, r: (
            f"{key} { ({k: round(v, 3) for k, v in r.items() if isinstance(v, float)}) }"
        ),
    )


def table_markdown(runs: dict[str, list[dict]], columns: list[tuple[str, str]]) -> str:
    """One row per setting: seeds, mean ± std of each column, the live decoder dims of every seed
    (Jacobian column norm within 10x of the largest; '–' where a run predates the count) and the
    train seconds per run."""

    def per_seed(rs, key, fmt):
        return ", ".join("–" if r.get(key) is None else fmt(r[key]) for r in rs)

    return markdown_table(
        [
            "setting",
            "seeds",
            *(name for _, name in columns),
            "live dims (per seed)",
            "train s (per seed)",
        ],
        [
            [
                label,
                len(rs),
                *(mean_std([r.get(k) for r in rs]) for k, _ in columns),
                per_seed(rs, "live_dims", str),
                per_seed(rs, "train_seconds", lambda v: f"{v:.0f}"),
            ]
            for label, rs in runs.items()
        ],
    )


def paired_table(rows: dict, base: str, keys: list[tuple[str, str]]) -> str:
    """Each row against ``base`` on the seeds both have: per key, the mean of the per-seed
    differences ± its standard error, and how many seeds are better and worse; in words where the
    mean difference is within one standard error (not a finding)."""
    if base not in rows:
        return ""
    out = []
    for label, rs in rows.items():
        diffs = [paired(rows[base], rs, lambda r, k=key: r[k]) for key, _ in keys]
        if label == base or diffs[0]["pairs"] < 2:
            continue
        unclear = ", within its standard error: no difference shown"
        cells = [
            f"{d['mean']:+.3f} ± {d['error']:.3f} ({d['up']} up, {d['down']} "
            f"down{'' if abs(d['mean']) > d['error'] else unclear})"
            for d in diffs
        ]
        out.append([label, diffs[0]["pairs"], *cells])
    return markdown_table(
        ["setting", "paired seeds", *(f"{name} − {base}" for _, name in keys)], out
    )


def verdicts(thesis: dict, classes: dict) -> list[str]:
    m = lambda rows, label, key: float(np.mean([r[key] for r in rows[label]]))
    lines = []

    def check(name: str, ok: bool, detail: str) -> None:
        lines.append(verdict(name, ok, detail))

    if {"beta-TCVAE", "beta-VAE", "autoencoder", RANDOM} <= set(thesis):
        for label in ("beta-TCVAE", "beta-VAE"):
            check(
                f"validity: {label} MIG and DCI-D above the autoencoder and the random encoder",
                all(
                    m(thesis, label, k) > max(m(thesis, "autoencoder", k), m(thesis, RANDOM, k))
                    for k in ("mig", "dci_disentanglement")
                ),
                ", ".join(
                    f"{k} {m(thesis, label, k):.3f} vs {m(thesis, 'autoencoder', k):.3f} / "
                    f"{m(thesis, RANDOM, k):.3f}"
                    for k in ("mig", "dci_disentanglement")
                ),
            )
        check(
            "anchor: beta-TCVAE MIG ≥ 0.3",
            m(thesis, "beta-TCVAE", "mig") >= 0.3,
            f"{m(thesis, 'beta-TCVAE', 'mig'):.3f}",
        )
    if "autoencoder" in thesis:
        plain = m(thesis, "autoencoder", "recon_bce")
        for label in (r for r in UNIVERSAL_ROWS if r in thesis):
            ratios = [r["recon_bce"] / plain for r in thesis[label]]
            live = [r.get("live_dims") for r in thesis[label]]
            check(
                f"no collapse: {label}, test reconstruction within 1.5x of the autoencoder's in "
                "every seed",
                max(ratios) <= 1.5,
                ", ".join(f"{x:.2f}x" for x in ratios),
            )
            check(
                f"no collapse: {label}, at least 5 live latent dims in every seed",
                all(v is not None and v >= 5 for v in live),
                f"live dims {live}",
            )
    for label, base in ((UNIVERSAL, "autoencoder"), (COMPOSITE, "beta-TCVAE")):
        if {label, base} <= set(thesis):
            d = paired(thesis[base], thesis[label], lambda r: r["mig"])
            check(
                f"issue 28 floor: {label} MIG above {base}'s, paired (more seeds up than down, "
                "mean difference above its standard error)",
                d["up"] > d["down"] and d["mean"] > d["error"],
                f"{d['mean']:+.3f} ± {d['error']:.3f} over {d['pairs']} seeds, {d['up']} up, "
                f"{d['down']} down",
            )
    if {UNIVERSAL, "beta-TCVAE"} <= set(thesis):
        u, tc = m(thesis, UNIVERSAL, "mig"), m(thesis, "beta-TCVAE", "mig")
        check(
            "issue 28 goal: universal HeRD MIG ≥ 0.35 with a reconstruction better than "
            "beta-TCVAE's",
            u >= 0.35 and m(thesis, UNIVERSAL, "recon_bce") < m(thesis, "beta-TCVAE", "recon_bce"),
            f"MIG {u:.3f} (beta-TCVAE {tc:.3f}), BCE {m(thesis, UNIVERSAL, 'recon_bce'):.4f} vs "
            f"{m(thesis, 'beta-TCVAE', 'recon_bce'):.4f}",
        )
    ours = CLASS_HERD
    if {ours, "none"} <= set(classes):
        acc, none_acc = m(classes, ours, "test_accuracy"), m(classes, "none", "test_accuracy")
        check(
            "class HeRD with the decoder: accuracy within 2 points of none",
            acc >= none_acc - 0.02,
            f"{acc:.3f} vs {none_acc:.3f}",
        )
        ratio = m(classes, ours, "recon_bce") / m(classes, "none", "recon_bce")
        check(
            "class HeRD with the decoder: reconstruction within 1.5x of none",
            ratio <= 1.5,
            f"{ratio:.2f}x",
        )
        spec, none_spec = (
            m(classes, ours, "image_sweep_specificity"),
            m(classes, "none", "image_sweep_specificity"),
        )
        check(
            "class-specific: image sweep specificity above none's",
            spec > none_spec,
            f"{spec:.3f} vs {none_spec:.3f}",
        )
        check(
            "class-specific (issue 28): image sweep specificity ≥ 0.5", spec >= 0.5, f"{spec:.3f}"
        )
    if {ours, "none", "beta-TCVAE"} <= set(classes):
        own = m(classes, ours, "class_mig_own_block")
        check(
            "class-specific (issue 22): per-class MIG inside the own block above none's and "
            "beta-TCVAE's own block",
            own > max(m(classes, label, "class_mig_own_block") for label in ("none", "beta-TCVAE")),
            f"{own:.3f} vs none {m(classes, 'none', 'class_mig_own_block'):.3f}, beta-TCVAE "
            f"{m(classes, 'beta-TCVAE', 'class_mig_own_block'):.3f}",
        )
        others = {
            label: max(
                m(classes, label, "class_mig_own_block"), m(classes, label, "class_mig_all_dims")
            )
            for label in ("none", "beta-TCVAE")
        }
        check(
            "class-specific: per-class MIG inside the own block above none and beta-TCVAE (their "
            "better of own block and all dims)",
            all(own > v for v in others.values()),
            f"{own:.3f} vs " + ", ".join(f"{k} {v:.3f}" for k, v in others.items()),
        )
    return lines


def summary(thesis: dict, classes: dict) -> str:
    """README's one paragraph: the measured means, named, with no verdict beyond the numbers."""
    m = lambda rows, label, key: np.mean([r[key] for r in rows[label]])
    parts = [f"{label} {m(thesis, label, 'mig'):.2f}" for label in thesis if label != RANDOM]
    text = "Shapes (dSprites-like, Burgess autoencoder, overall MIG): " + ", ".join(parts) + "."
    ours = CLASS_HERD
    if ours in classes:
        text += (
            " Class = shape, per-class MIG inside the own block: "
            + ", ".join(
                f"{label} {m(classes, label, 'class_mig_own_block'):.2f}" for label in classes
            )
            + "."
        )
    return (
        text + " Seeds and spread: "
        "[docs/efficacy.md](docs/efficacy.md#shapes-the-baselines-known-results-first-then-herd-against-them).\n"
    )


def redraw_grids(steps: int) -> None:
    import tempfile

    for label, name in GRIDS.items():
        with tempfile.TemporaryDirectory() as tmp:
            trained_run(Path(tmp) / "run", {**settings_of("thesis", label, steps), "seed": 0})
            print(draw_grid(Path(tmp) / "run", name), flush=True)


def run(seeds: list[int], publish_only: bool, args) -> None:
    if args.grids:
        return redraw_grids(args.steps)
    if not publish_only:
        train_all(seeds, args)
    if args.steps != DEFAULT_STEPS:  # a screen at another budget publishes no table
        return
    rows = {}
    for table, (_, settings) in TABLES.items():
        wanted = {key: cfg for key, cfg, *_ in cells([table], None, seeds, args.steps)}
        rows[table] = group(STORE.runs(wanted), order=settings)
    md = (
        f"`python scripts/efficacy_shapes.py --steps {args.steps}`, seeds {seeds}, mean ± std; "
        f"{stamp(r for t in rows.values() for rs in t.values() for r in rs)}. Burgess 4-conv "
        f"encoder and decoder, BCE, batch 128, lr 1e-3, {args.steps} steps on "
        f"{COMMON['num_samples']} generated shapes (65% for training), curvature and Jacobian "
        f"terms on {COMMON['penalty_samples']} samples per batch, each method at its default "
        f"weight unless the row says otherwise; scores on {HELD_OUT} fresh held-out "
        "shapes.\n\n**Benchmark validity and the thesis** (unsupervised, d = 10; MIG, DCI-D and "
        "SAP over shape, scale, orientation, x and y; reconstruction as mean BCE per pixel):\n\n"
        + table_markdown(
            rows["thesis"],
            [
                ("mig", "MIG"),
                ("dci_disentanglement", "DCI-D"),
                ("sap", "SAP"),
                ("recon_bce", "recon BCE"),
            ],
        )
        + "\n\nPaired with the autoencoder (the same seeds; mean difference ± its standard "
        "error):\n\n"
        + paired_table(
            rows["thesis"],
            "autoencoder",
            [("mig", "MIG"), ("dci_disentanglement", "DCI-D"), ("sap", "SAP")],
        )
        + "\n\n**Class-specific on an autoencoder** (class = shape, 3 blocks of 4 dims; per-class "
        "MIG over a class's own factors on its own images; image sweep specificity: the share of a "
        "class's image change that moving its own block makes):\n\n"
        + table_markdown(
            rows["class"],
            [
                ("test_accuracy", "accuracy"),
                ("class_mig_all_dims", "per-class MIG, all dims"),
                ("class_mig_own_block", "per-class MIG, own block"),
                ("image_sweep_specificity", "image sweep specificity"),
                ("recon_bce", "recon BCE"),
            ],
        )
        + "\n\nPaired with none (the same seeds; mean difference ± its standard error):\n\n"
        + paired_table(
            rows["class"],
            "none",
            [
                ("class_mig_own_block", "own-block MIG"),
                ("image_sweep_specificity", "image sweep specificity"),
            ],
        )
        + f"\n\nTargets (issues 22, 28 and the efficacy issue; the shipped rows: {UNIVERSAL} and "
        f"{CLASS_HERD}), computed from the rows above:\n\n"
        + "\n".join(verdicts(rows["thesis"], rows["class"]))
        + "\n"
    )
    publish("benchmark_efficacy_shapes", md)
    publish("benchmark_efficacy_shapes_summary", summary(rows["thesis"], rows["class"]))


def main() -> None:
    parser = seeds_parser(__doc__)
    add_arguments(parser)
    args = parser.parse_args()
    run(args.seeds, args.publish_only, args)


if __name__ == "__main__":
    main()
