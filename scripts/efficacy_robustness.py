"""Efficacy under attack: robustness side by side, gradient masking ruled in or out.

Trains each row of configs/benchmarks/efficacy_robustness.yaml (`--reg none`, the class default and
beta-TCVAE with a decoder) on digits per seed, then attacks each run as `herd-cls robustness` does
on its class-balanced test images: FGSM, PGD, APGD-CE and the gradient-free Square at every eps, PGD
crafted on an independently trained `--reg none` run (the next seed's) as a transfer attack, PGD and
APGD again with more steps and restarts, unbounded PGD (eps 1), and the input-gradient norms at the
clean and attacked images. Every run's numbers and sanity checks go to
reports/benchmark_efficacy_robustness.json (finished keys are skipped), the table to
docs/efficacy.md. Run folders are kept in runs/efficacy_robustness/ and reused.

    python scripts/efficacy_robustness.py [--seeds 0 1 2] [--eps 0 0.03 0.1 0.3]
"""

from __future__ import annotations

import time
from dataclasses import asdict, fields
from functools import partial

import numpy as np
import torch

from herd_cls import benchmarking as bench
from herd_cls.benchmarking import robustness_protocol as protocol

SETTINGS = bench.spec("efficacy_robustness")["rows"]
SOURCE = "none"  # transfer attacks are crafted on this setting's run of the next seed
RUN_DIR = bench.ROOT / "runs" / "efficacy_robustness"
# "r1" ends every key: bump it when the evaluation changes, so older saved runs are not mixed in
STORE = bench.ResultStore(bench.ROOT / "reports" / "benchmark_efficacy_robustness.json", "r1")
PROTOCOL = [f.name for f in fields(protocol.Protocol)]  # options; saved with each run


def run_folder(label: str, seed: int, backbone: str):
    """The trained run of ``label`` and ``seed`` (trained now unless its folder is finished)."""
    return bench.trained_run(
        RUN_DIR / f"{backbone}-{SETTINGS[label]['reg']}-seed{seed}",
        {"dataset": "digits", "backbone": backbone, "seed": seed, **SETTINGS[label]},
    )


def evaluate(
    label: str, seed: int, seeds: list[int], args, how_hard: protocol.Protocol, scratch=None
) -> dict:
    start = time.perf_counter()
    run = run_folder(label, seed, args.backbone)
    source = run_folder(SOURCE, seeds[(seeds.index(seed) + 1) % len(seeds)], args.backbone)
    attacked = protocol.attacked(run, source, args.eps, how_hard)
    return {
        "setting": label,
        "seed": seed,
        "transfer_source": source.path.name,
        "test_accuracy": run.summary["test_accuracy"],
        "block_purity": run.summary.get("block_purity"),
        **attacked,
        "evaluate_seconds": time.perf_counter() - start,
    }


def jobs(seeds: list[int], args):
    """Every run: whole seeds first, so that an interrupted benchmark still compares the
    settings."""
    how_hard = protocol.Protocol(**{k: getattr(args, k) for k in PROTOCOL})
    measured_with = {"backbone": args.backbone, "eps": args.eps, **asdict(how_hard)}
    for seed in seeds:
        for label in SETTINGS:
            key = STORE.key(label, f"seed {seed}", args.backbone, f"n {args.n_samples}")
            measure = partial(evaluate, label, seed, seeds, args, how_hard)
            yield bench.Job(key, {**SETTINGS[label], **measured_with}, measure)


def report(key: str, r: dict) -> str:
    d = r["default"]
    worst = d["worst_case"]["linf"].items()
    return (
        f"{key}: clean {d['clean']['accuracy']:.3f}  worst case "
        + "  ".join(f"eps {e}: {w['robust_accuracy']:.3f}" for e, w in worst)
        + f"  flags {sum(not c['passed'] for c in d['checks'])}  ({r['evaluate_seconds']:.0f} s)"
    )


def attacks_table(results: dict[str, list[dict]], eps: list[str], args) -> str:
    strong = f"{args.strong_steps} steps × {args.strong_restarts} restarts"
    passes = [
        ("default", "fgsm", "fgsm, one step"),
        *(("default", a, f"{a}, {args.steps} steps") for a in protocol.ATTACKS[1:3]),
        ("default", "square", f"square, {args.queries} queries"),
        ("default", "transfer-pgd-linf", f"PGD crafted on {SOURCE} (transfer)"),
        *(("strong", a, f"{a}, {strong}") for a in protocol.STRONG),
    ]
    cell = lambda runs, *path: bench.mean_std([bench.value_at(r, path) for r in runs])
    rows = []
    for label, runs in results.items():
        clean = cell(runs, "default", "clean", "accuracy")
        for part, name, title in passes:
            accuracy = [cell(runs, part, "attacks", name, e, "robust_accuracy") for e in eps]
            rows.append([label, title, clean, *accuracy])
        rows.append(
            [label, "**worst of all**", "", *(f"**{cell(runs, 'worst_of_all', e)}**" for e in eps)]
        )
    return bench.markdown_table(["--reg", "attack", "clean", *(f"eps {e}" for e in eps)], rows)


def masking_seeds(runs: list[dict]) -> str:
    """The masking signs of the row's seeds, each with how many seeds show it."""
    signs = [s for r in runs for s in protocol.masking_signs(r)]
    return ", ".join(f"{s} ({signs.count(s)}/{len(runs)})" for s in sorted(set(signs))) or "none"


def diagnostics(results: dict[str, list[dict]], mid: str) -> str:
    columns = [
        (("default", "gradients", "margin_median"), "median \\|d margin/dx\\| clean"),
        (
            ("default", "attacks", "apgd-ce", mid, "gradients", "margin_median"),
            f"at APGD eps {mid}",
        ),
        (("default", "gradients", "tiny_share"), "images with tiny gradients"),
        (("default", "unbounded", "robust_accuracy"), "unbounded PGD (eps 1)"),
        (masking_seeds, "masking signs (seeds)"),
        (
            lambda runs: f"{sum(map(protocol.fgsm_rises, runs))}/{len(runs)}",
            "FGSM rises with eps (seeds; not counted)",
        ),
    ]
    return bench.seed_table(results, columns)


def latent_shift(e: str):
    """A seed_table cell: APGD's mean latent shift at ``e`` inside the own block / other blocks /
    shared dims."""

    def cell(runs: list[dict]) -> str:
        shifts = [r["default"]["attacks"]["apgd-ce"][e]["latent_shift"] for r in runs]
        mean = lambda values: np.nanmean([v for v in values if v is not None])
        return " / ".join(
            bench.mean_std([mean(s[p]) for s in shifts]) for p in ("own", "other", "shared")
        )

    return cell


def per_class(results: dict[str, list[dict]], e: str) -> str:
    k = len(next(iter(results.values()))[0]["default"]["clean"]["per_class"])
    worst = ("default", "worst_case", "linf", e, "per_class")
    columns = [((*worst, c), f"class {c}") for c in range(k)]
    return bench.seed_table(
        results, [*columns, (latent_shift(e), "latent shift own / other / shared")]
    )


def verdicts(results: dict[str, list[dict]], eps: list[str]) -> list[str]:
    lines = []
    for label, runs in results.items():
        signs = {r["seed"]: protocol.masking_signs(r) for r in runs}
        signs = {seed: found for seed, found in signs.items() if found}
        listed = "; ".join(f"seed {seed}: {', '.join(s)}" for seed, s in signs.items())
        lines.append(
            f"- {label}: gradient masking **{'RULED IN' if signs else 'ruled out'}** "
            + (
                f"(signs in seeds {list(signs)}: {listed})"
                if signs
                else "(no masking sign in any seed)"
            )
        )
    ours, base = "class (default)", "none"
    if not {ours, base} <= set(results):
        return lines
    for e in [e for e in eps if float(e) > 0]:
        default = lambda lab: bench.mean(
            results, lab, ("default", "worst_case", "linf", e, "robust_accuracy")
        )
        full = lambda lab: bench.mean(results, lab, ("worst_of_all", e))
        lines.append(
            f"- eps {e}: class vs none, worst case of the 10-step attacks, Square and transfer "
            f"{default(ours):.3f} vs {default(base):.3f}; worst of all attacks "
            f"{full(ours):.3f} vs {full(base):.3f}: class is "
            f"**{'more' if full(ours) > full(base) else 'not more'} robust** than none once "
            "every attack is counted"
        )
    return lines


def page(seeds: list[int], args) -> str:
    results = bench.group(STORE.runs(jobs(seeds, args)), order=SETTINGS)
    eps = [str(e) for e in args.eps if e > 0]
    mid = eps[len(eps) // 2]
    seeds_done = {label: sorted(r["seed"] for r in runs) for label, runs in results.items()}
    return bench.page(
        f"Digits, `--backbone {args.backbone}`, seeds {seeds_done}, {args.n_samples} images per "
        "run; robust accuracy, mean ± std over seeds. `python scripts/efficacy_robustness.py`,",
        [r for runs in results.values() for r in runs],
        attacks_table(results, eps, args),
        f"Masking diagnostics (APGD at eps {mid}):",
        diagnostics(results, mid),
        f"Per class at eps {eps[0]}:",
        per_class(results, eps[0]),
        "\n".join(verdicts(results, eps)),
    )


def main() -> None:
    parser = bench.seeds_parser(__doc__)
    parser.add_argument("--backbone", default="resnet18", help="backbone of every run")
    parser.add_argument("--eps", type=float, nargs="+", default=[0, 0.03, 0.1, 0.3], help="L-inf")
    for f in fields(protocol.Protocol):
        option = f"--{f.name.replace('_', '-')}"
        parser.add_argument(option, type=int, default=f.default, help=f.metadata["help"])
    args = parser.parse_args()
    if not args.publish_only:
        torch.set_num_threads(1)
        STORE.fill(jobs(args.seeds, args), report)
    bench.publish("benchmark_efficacy_robustness", page(args.seeds, args))


if __name__ == "__main__":
    main()
