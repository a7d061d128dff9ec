"""Efficacy under attack: robustness side by side, gradient masking ruled in or out.

Trains `--reg none`, the class default and beta-TCVAE (with a decoder) on digits per seed, then
attacks each run as `herd-cls robustness` does on its class-balanced test images: FGSM, PGD, APGD-CE
and the gradient-free Square at every eps, PGD crafted on an independently trained `--reg none` run
(the next seed's) as a transfer attack, PGD and APGD again with more steps and restarts, unbounded
PGD (eps 1), and the input-gradient norms at the clean and attacked images. Every run's numbers and
sanity checks go to reports/benchmark_efficacy_robustness.json (finished keys are skipped), the
table to docs/efficacy.md. Run folders are kept in runs/efficacy_robustness/ and reused.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch

from herd_cls.benchmarking import (
    seeds_parser,
    ROOT,
    Job,
    ResultStore,
    group,
    markdown_table,
    mean_std,
    publish,
    stamp,
    trained_run,
)
from herd_cls.analysis.attacks import ATTACKS as REGISTRY
from herd_cls.analysis.run_attacks import attack_run
from herd_cls.analysis.sanity import sanity_checks

SETTINGS = {
    "none": {"reg": "none"},
    "class (default)": {"reg": "class"},
    "beta-TCVAE": {"reg": "beta-tcvae", "decoder": True},
}
SOURCE = "none"  # transfer attacks are crafted on this setting's run of the next seed
ATTACKS = ["fgsm", "pgd-linf", "apgd-ce", "square"]
STRONG = ["pgd-linf", "apgd-ce"]
RUN_DIR = ROOT / "runs" / "efficacy_robustness"
# "r1" ends every key: bump it when the evaluation changes, so older saved runs are not mixed in
STORE = ResultStore(ROOT / "reports" / "benchmark_efficacy_robustness.json", "r1")
# the sanity checks that are signs of gradient masking, by check id, whichever attack flags them
MASKING_SIGNS = {
    "falls-with-eps": "accuracy rises with eps",
    "gradient-free-not-stronger": "Square beats the white-box attacks",
    "transfer-not-stronger": "transfer from none beats the white-box attacks",
    "unbounded": "unbounded PGD leaves images correct",
    "gradients-not-vanishing": "vanishing input gradients",
    "gradients-finite": "zero or non-finite loss gradients",
}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--backbone", default="resnet18", help="backbone of every run (the README's by default)"
    )
    parser.add_argument(
        "--eps", type=float, nargs="+", default=[0, 0.03, 0.1, 0.3], help="L-inf budgets"
    )
    parser.add_argument(
        "--n-samples", type=int, default=200, help="class-balanced test images attacked per run"
    )
    parser.add_argument(
        "--steps", type=int, default=10, help="iterations of the default attacks (the CLI's)"
    )
    parser.add_argument(
        "--queries", type=int, default=1000, help="Square's model evaluations per image"
    )
    parser.add_argument(
        "--strong-steps", type=int, default=50, help="iterations of the stronger PGD and APGD"
    )
    parser.add_argument(
        "--strong-restarts", type=int, default=3, help="restarts of the stronger PGD and APGD"
    )


def run_folder(label: str, seed: int, backbone: str):
    """The trained run of ``label`` and ``seed`` (trained now unless its folder is finished)."""
    return trained_run(
        RUN_DIR / f"{backbone}-{SETTINGS[label]['reg']}-seed{seed}",
        {"dataset": "digits", "backbone": backbone, "seed": seed, **SETTINGS[label]},
    )


def compact(result: dict) -> dict:
    """A robustness result without its per-image lists and confusion matrices."""
    attacks = {
        name: {
            e: {k: v for k, v in row.items() if k not in ("correct", "confusion")}
            for e, row in table.items()
        }
        for name, table in result["attacks"].items()
    }
    gradients = {k: v for k, v in result["gradients"].items() if k not in ("ce", "margin")}
    return {**result, "attacks": attacks, "gradients": gradients}


def evaluate(label: str, seed: int, seeds: list[int], args, scratch=None) -> dict:
    start = time.perf_counter()
    run = run_folder(label, seed, args.backbone)
    source = run_folder(SOURCE, seeds[(seeds.index(seed) + 1) % len(seeds)], args.backbone)
    default = attack_run(
        run, ATTACKS, args.eps, args.steps, 1, args.n_samples, args.queries, source, "pgd-linf"
    )
    strong = attack_run(
        run,
        STRONG,
        [e for e in args.eps if e > 0],
        args.strong_steps,
        args.strong_restarts,
        args.n_samples,
    )
    worst = {}  # per image, the worst of every L-inf attack of both passes
    for e in map(str, args.eps):
        rows = [
            t[e]["correct"] for res in (default, strong) for t in res["attacks"].values() if e in t
        ]
        worst[e] = float(torch.tensor(rows).all(0).float().mean())
    return {
        "setting": label,
        "seed": seed,
        "transfer_source": source.path.name,
        "test_accuracy": run.summary["test_accuracy"],
        "block_purity": run.summary.get("block_purity"),
        "worst_of_all": worst,
        "default": compact(default),
        "strong": compact(strong),
        "evaluate_seconds": time.perf_counter() - start,
    }


def cells(seeds: list[int], args):
    """(key, settings, label, seed) of every run: whole seeds first, so that an interrupted
    benchmark still compares the settings."""
    protocol = {
        k: getattr(args, k)
        for k in (
            "backbone",
            "eps",
            "n_samples",
            "steps",
            "queries",
            "strong_steps",
            "strong_restarts",
        )
    }
    for seed in seeds:
        for label in SETTINGS:
            yield (
                STORE.key(label, f"seed {seed}", args.backbone, f"n {args.n_samples}"),
                {**SETTINGS[label], **protocol},
                label,
                seed,
            )


def report(key: str, r: dict) -> str:
    d = r["default"]
    return (
        f"{key}: clean {d['clean']['accuracy']:.3f}  worst case "
        + "  ".join(
            f"eps {e}: {r['robust_accuracy']:.3f}" for e, r in d["worst_case"]["linf"].items()
        )
        + f"  flags {sum(not c['passed'] for c in d['checks'])}  ({r['evaluate_seconds']:.0f} s)"
    )


def attack_runs(seeds: list[int], args) -> None:
    torch.set_num_threads(1)
    STORE.fill(
        (
            Job(key, settings, partial(evaluate, label, seed, seeds, args))
            for key, settings, label, seed in cells(seeds, args)
        ),
        report,
    )


def checks(part: dict) -> list[dict]:
    """One pass's sanity checks; a pass saved before checks carried ids is checked again from its
    numbers."""
    return part["checks"] if all("id" in c for c in part["checks"]) else sanity_checks(part)


def failed_checks(r: dict) -> list[tuple[str, str | None]]:
    """(id, attack) of every flagged check of the run, both passes."""
    return [
        (c["id"], c["attack"])
        for part in ("default", "strong")
        for c in checks(r[part])
        if c["verdict"] == "flag"
    ]


def single_step(attack: str | None) -> bool:
    return attack in REGISTRY and not REGISTRY.get(attack).iterative


def masking_signs(r: dict) -> list[str]:
    """The masking signs among the run's failed checks, both passes. Single-step FGSM rising with
    eps is left out (a fixed step of size eps overshoots; it is listed apart): the iterative attacks
    decide."""
    return sorted(
        {
            MASKING_SIGNS[i]
            for i, attack in failed_checks(r)
            if i in MASKING_SIGNS and not single_step(attack)
        }
    )


def table(results: dict[str, list[dict]], eps: list[str], args) -> str:
    passes = (
        [("default", "fgsm", "fgsm, one step")]
        + [("default", a, f"{a}, {args.steps} steps") for a in ATTACKS[1:3]]
        + [
            ("default", "square", f"square, {args.queries} queries"),
            ("default", "transfer-pgd-linf", f"PGD crafted on {SOURCE} (transfer)"),
            *[
                ("strong", a, f"{a}, {args.strong_steps} steps × {args.strong_restarts} restarts")
                for a in STRONG
            ],
        ]
    )
    rows = []
    for label, runs in results.items():
        clean = mean_std([r["default"]["clean"]["accuracy"] for r in runs])
        rows += [
            [
                label,
                title,
                clean,
                *(
                    mean_std(
                        [r[part]["attacks"][name].get(e, {}).get("robust_accuracy") for r in runs]
                    )
                    for e in eps
                ),
            ]
            for part, name, title in passes
        ]
        rows.append(
            [
                label,
                "**worst of all**",
                "",
                *(f"**{mean_std([r['worst_of_all'][e] for r in runs])}**" for e in eps),
            ]
        )
    return markdown_table(["--reg", "attack", "clean", *(f"eps {e}" for e in eps)], rows)


def diagnostics(results: dict[str, list[dict]], mid: str) -> str:
    rows = []
    for label, runs in results.items():
        signs = [s for r in runs for s in masking_signs(r)]
        listed = (
            ", ".join(f"{s} ({signs.count(s)}/{len(runs)})" for s in sorted(set(signs))) or "none"
        )
        d = [r["default"] for r in runs]
        rows.append(
            [
                label,
                mean_std([x["gradients"]["margin_median"] for x in d]),
                mean_std([x["attacks"]["apgd-ce"][mid]["gradients"]["margin_median"] for x in d]),
                mean_std([x["gradients"]["tiny_share"] for x in d]),
                mean_std([x["unbounded"]["robust_accuracy"] for x in d]),
                listed,
                f"{sum(('falls-with-eps', 'fgsm') in failed_checks(r) for r in runs)}/{len(runs)}",
            ]
        )
    return markdown_table(
        [
            "--reg",
            "median \\|d margin/dx\\| clean",
            f"at APGD eps {mid}",
            "images with tiny gradients",
            "unbounded PGD (eps 1)",
            "masking signs (seeds)",
            "FGSM rises with eps (seeds; not counted)",
        ],
        rows,
    )


def per_class(results: dict[str, list[dict]], e: str) -> str:
    k = len(next(iter(results.values()))[0]["default"]["clean"]["per_class"])
    rows = []
    for label, runs in results.items():
        cells = [
            mean_std([r["default"]["worst_case"]["linf"][e]["per_class"][c] for r in runs])
            for c in range(k)
        ]
        shift = [
            mean_std(
                [
                    np.nanmean(
                        [
                            v
                            for v in r["default"]["attacks"]["apgd-ce"][e]["latent_shift"][p]
                            if v is not None
                        ]
                    )
                    for r in runs
                ]
            )
            for p in ("own", "other", "shared")
        ]
        rows.append([label, *cells, " / ".join(shift)])
    return markdown_table(
        ["--reg", *(f"class {c}" for c in range(k)), "latent shift own / other / shared"], rows
    )


def verdicts(results: dict[str, list[dict]], eps: list[str]) -> list[str]:
    lines = []
    for label, runs in results.items():
        flagged = [r["seed"] for r in runs if masking_signs(r)]
        lines.append(
            f"- {label}: gradient masking **{'RULED IN' if flagged else 'ruled out'}** "
            + (
                f"(signs in seeds {flagged}: "
                + "; ".join(
                    f"seed {r['seed']}: {', '.join(masking_signs(r))}"
                    for r in runs
                    if masking_signs(r)
                )
                + ")"
                if flagged
                else "(no masking sign in any seed)"
            )
        )
    ours, base = "class (default)", "none"
    if {ours, base} <= set(results):
        for e in [e for e in eps if float(e) > 0]:
            default = {
                lab: np.mean(
                    [r["default"]["worst_case"]["linf"][e]["robust_accuracy"] for r in results[lab]]
                )
                for lab in (ours, base)
            }
            full = {
                lab: np.mean([r["worst_of_all"][e] for r in results[lab]]) for lab in (ours, base)
            }
            lines.append(
                f"- eps {e}: class vs none, worst case of the 10-step attacks, Square and transfer "
                f"{default[ours]:.3f} vs {default[base]:.3f}; worst of all attacks "
                f"{full[ours]:.3f} vs {full[base]:.3f}: class is "
                f"**{'more' if full[ours] > full[base] else 'not more'} robust** than none once "
                "every attack is counted"
            )
    return lines


def publish_table(seeds: list[int], args) -> None:
    wanted = {key: settings for key, settings, *_ in cells(seeds, args)}
    results = group(STORE.runs(wanted), order=SETTINGS)
    eps = [str(e) for e in args.eps if e > 0]
    mid = eps[len(eps) // 2]
    seeds_done = {label: sorted(r["seed"] for r in runs) for label, runs in results.items()}
    md = (
        f"Digits, `--backbone {args.backbone}`, each `--reg` at its defaults (beta-TCVAE with "
        f"`--decoder`), seeds {seeds_done}; {args.n_samples} class-balanced test images per run, "
        "L-inf eps in pixels of [0, 1]; robust accuracy, mean ± std over seeds. Transfer attacks "
        f"are crafted on the `--reg {SOURCE}` run of the next seed. `python "
        "scripts/efficacy_robustness.py`, "
        f"{stamp(r for runs in results.values() for r in runs)}.\n\n"
        + table(results, eps, args)
        + "\n\nMasking diagnostics: per-image L2 norm of the input gradient of the logit margin "
        "(true logit minus the largest other), on clean images and at APGD's adversarial images "
        f"at eps {mid}; the share of images whose norm is below 1e-6; accuracy under PGD at eps 1, "
        "where any image is reachable; and which sanity checks failed in how many seeds.\n\n"
        + diagnostics(results, mid)
        + f"\n\nPer class: worst case over the default attacks at eps {eps[0]}, and where APGD at "
        "that eps moves z (share of the squared displacement in the true class's block, other "
        "classes' blocks, shared dims; mean over classes).\n\n"
        + per_class(results, eps[0])
        + "\n\n"
        + "\n".join(verdicts(results, eps))
        + "\n"
    )
    publish("benchmark_efficacy_robustness", md)


def run(seeds: list[int], publish_only: bool, args) -> None:
    if not publish_only:
        attack_runs(seeds, args)
    publish_table(seeds, args)


def main() -> None:
    parser = seeds_parser(__doc__)
    add_arguments(parser)
    args = parser.parse_args()
    run(args.seeds, args.publish_only, args)


if __name__ == "__main__":
    main()
