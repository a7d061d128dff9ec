"""The robustness benchmark's protocol on one trained run, and what its saved records read back.

:func:`attacked` runs, as hard as its :class:`Protocol` says, the default attacks as ``herd-cls
robustness`` does (plus PGD crafted on an independently trained run, a transfer attack), the
white-box ones again with more steps and restarts, and takes per image the worst of every attack
of both passes (all L-inf). Records keep the passes :func:`compact` (no per-image lists);
:func:`record_checks`, :func:`masking_signs` and :func:`fgsm_rises` read their sanity checks back,
also from records saved before checks carried ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from herd_cls.analysis.run_attacks import attack_run
from herd_cls.analysis import sanity

ATTACKS = ["fgsm", "pgd-linf", "apgd-ce", "square"]  # the default pass
STRONG = ["pgd-linf", "apgd-ce"]  # again, with strong_steps and strong_restarts


@dataclass(frozen=True)
class Protocol:
    """How hard each run is attacked; a saved run's settings include it. Each field's help is its
    benchmark option's."""

    n_samples: int = field(
        default=200, metadata={"help": "class-balanced test images attacked per run"}
    )
    steps: int = field(
        default=10, metadata={"help": "iterations of the default attacks (the CLI's)"}
    )
    queries: int = field(default=1000, metadata={"help": "Square's model evaluations per image"})
    strong_steps: int = field(
        default=50, metadata={"help": "iterations of the stronger PGD and APGD"}
    )
    strong_restarts: int = field(
        default=3, metadata={"help": "restarts of the stronger PGD and APGD"}
    )


def attacked(run, source, eps: list[float], protocol: Protocol = Protocol()) -> dict:
    """{"worst_of_all": {eps: accuracy}, "default": pass, "strong": pass} of ``run`` (a loaded
    Run), the transfer attack crafted on ``source``'s model; the strong pass skips eps 0."""
    p = protocol
    default = attack_run(run, ATTACKS, eps, p.steps, 1, p.n_samples, p.queries, source, "pgd-linf")
    strong_eps = [e for e in eps if e > 0]
    strong = attack_run(run, STRONG, strong_eps, p.strong_steps, p.strong_restarts, p.n_samples)
    return {
        "worst_of_all": worst_of_all([default, strong], eps),
        "default": compact(default),
        "strong": compact(strong),
    }


def worst_of_all(results: list[dict], eps: list[float]) -> dict[str, float]:
    """Per eps, the share of images that every attack of every result (that ran at that eps)
    leaves correctly classified."""
    worst = {}
    for e in map(str, eps):
        tables = [t for result in results for t in result["attacks"].values() if e in t]
        worst[e] = float(torch.tensor([t[e]["correct"] for t in tables]).all(0).float().mean())
    return worst


def compact(result: dict) -> dict:
    """A robustness result without its per-image lists and confusion matrices."""
    drop = lambda row, keys: {k: v for k, v in row.items() if k not in keys}
    attacks = {
        name: {e: drop(row, ("correct", "confusion")) for e, row in table.items()}
        for name, table in result["attacks"].items()
    }
    return {**result, "attacks": attacks, "gradients": drop(result["gradients"], ("ce", "margin"))}


def record_checks(record: dict) -> list[dict]:
    """The sanity checks of both passes of a saved record (a pass saved before checks carried ids
    is checked again from its numbers)."""
    passes = [record[p] for p in ("default", "strong")]
    return [
        c
        for p in passes
        for c in (p["checks"] if all("id" in c for c in p["checks"]) else sanity.sanity_checks(p))
    ]


def masking_signs(record: dict) -> list[str]:
    """The gradient-masking signs among the flagged checks of a saved record's passes, each once
    (:func:`herd_cls.analysis.sanity.masking_signs`)."""
    return sanity.masking_signs(record_checks(record))


def fgsm_rises(record: dict) -> bool:
    """FGSM's accuracy rises with eps (not a masking sign: a fixed step of size eps overshoots)."""
    return any(
        (c["id"], c["attack"], c["verdict"]) == ("falls-with-eps", "fgsm", "flag")
        for c in record_checks(record)
    )
