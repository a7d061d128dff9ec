"""The checks that tell real robustness from gradient masking (Carlini et al. 2019, "On evaluating
adversarial robustness"), each a small function of a robustness result.

Every check is a dict: ``id`` (stable and machine-readable: what scripts key on), ``attack`` (the
result name it is about, or None), ``verdict`` ("pass" or "flag"), ``passed`` (the same as a bool),
``check`` (the human message) and ``detail`` (the numbers behind it). The ids:

- per attack: ``eps-zero-is-clean``, ``not-above-clean``, ``falls-with-eps``, ``valid-images``,
  ``large-eps``;
- across attacks: ``beats-single-step``, ``gradient-free-not-stronger``, ``transfer-not-stronger``;
- for the model: ``unbounded``, ``gradients-not-vanishing``, ``gradients-finite``.

:func:`masking_signs` reads the flagged checks that point at gradient masking rather than at a weak
attack or a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attacks import ATTACKS, TRANSFER, Attack


@dataclass(frozen=True)
class Tolerances:
    """How far each check lets the numbers stray before it flags them."""

    exact: float = 1e-9  # eps 0, robust above clean, accuracy rising with eps
    single_step: float = 0.02  # an iterative attack may leave this much more than a single step
    # a gradient-free or transfer attack may be this much stronger than white-box
    transfer: float = 0.01
    large_eps_accuracy: float = 0.1  # what a white-box L-inf attack may leave at eps >= 0.3
    unbounded_accuracy: float = 0.02  # what PGD at eps 1 may leave
    tiny_share: float = 0.05  # the share of images with a vanishing margin gradient


# the checks whose flag is a sign of gradient masking, by id: the sign in words
MASKING_SIGNS = {
    "falls-with-eps": "accuracy rises with eps",
    "gradient-free-not-stronger": "Square beats the white-box attacks",
    "transfer-not-stronger": "transfer beats the white-box attacks",
    "unbounded": "unbounded PGD leaves images correct",
    "gradients-not-vanishing": "vanishing input gradients",
    "gradients-finite": "zero or non-finite loss gradients",
}


def masking_signs(checks: list[dict]) -> list[str]:
    """The gradient-masking signs (:data:`MASKING_SIGNS`) among the flagged ``checks``, each once,
    sorted; none: masking is ruled out. A single-step attack's accuracy rising with eps is not one
    (a fixed step of size eps overshoots): the iterative attacks decide."""
    single_step = lambda name: name in ATTACKS and not ATTACKS.get(name).iterative
    return sorted(
        {
            MASKING_SIGNS[c["id"]]
            for c in checks
            if c["verdict"] == "flag" and c["id"] in MASKING_SIGNS and not single_step(c["attack"])
        }
    )


def _check(check_id: str, attack: str | None, passed: bool, message: str, detail: str) -> dict:
    passed = bool(passed)
    return {
        "id": check_id,
        "attack": attack,
        "verdict": "pass" if passed else "flag",
        "passed": passed,
        "check": message,
        "detail": detail,
    }


def _attack(result_name: str) -> Attack | None:
    """The registered attack behind a result name; None for a name no longer registered."""
    base = result_name.removeprefix(TRANSFER)
    return ATTACKS.get(base) if base in ATTACKS else None


def _white_box_linf(result_name: str) -> bool:
    attack = _attack(result_name)
    return (
        not result_name.startswith(TRANSFER)
        and attack is not None
        and attack.white_box
        and attack.norm == "linf"
    )


def _eps(table: dict) -> list[str]:
    return sorted(table, key=float)


def eps_zero_is_clean(name: str, table: dict, clean: float, tol: Tolerances) -> dict | None:
    zero = next((table[e]["robust_accuracy"] for e in _eps(table) if float(e) == 0), None)
    if zero is None:
        return None
    return _check(
        "eps-zero-is-clean",
        name,
        abs(zero - clean) <= tol.exact,
        f"{name}: eps = 0 reproduces clean accuracy",
        f"{zero:.4f} vs clean {clean:.4f}",
    )


def not_above_clean(name: str, table: dict, clean: float, tol: Tolerances) -> dict:
    top = max(row["robust_accuracy"] for row in table.values())
    return _check(
        "not-above-clean",
        name,
        top <= clean + tol.exact,
        f"{name}: robust accuracy never exceeds clean",
        f"max {top:.4f} vs clean {clean:.4f}",
    )


def falls_with_eps(name: str, table: dict, clean: float, tol: Tolerances) -> dict:
    accs = [table[e]["robust_accuracy"] for e in _eps(table)]
    return _check(
        "falls-with-eps",
        name,
        all(b <= a + tol.exact for a, b in zip(accs, accs[1:])),
        f"{name}: accuracy falls as eps grows",
        " → ".join(f"{a:.3f}" for a in accs),
    )


def valid_images(name: str, table: dict, clean: float, tol: Tolerances) -> dict | None:
    eps = _eps(table)
    if not all("valid_images" in table[e] for e in eps):
        return None
    return _check(
        "valid-images",
        name,
        all(
            table[e]["valid_images"] and table[e]["max_perturbation"] <= float(e) + 1e-5
            for e in eps
        ),
        f"{name}: adversarial images are finite, in [0, 1] and within eps",
        ", ".join(f"eps {e}: max {table[e]['max_perturbation']:.4f}" for e in eps),
    )


def large_eps(name: str, table: dict, clean: float, tol: Tolerances) -> dict | None:
    last = _eps(table)[-1]
    if not _white_box_linf(name) or float(last) < 0.3:
        return None
    acc = table[last]["robust_accuracy"]
    return _check(
        "large-eps",
        name,
        acc <= tol.large_eps_accuracy,
        f"{name}: large eps drives accuracy to about 0",
        f"{acc:.4f} at eps {last} (at most {tol.large_eps_accuracy})",
    )


PER_ATTACK = (eps_zero_is_clean, not_above_clean, falls_with_eps, valid_images, large_eps)


def beats_single_step(result: dict, tol: Tolerances) -> list[dict]:
    """Every iterative white-box L-inf attack leaves no more than a single-step one (FGSM) on the
    same loss, at every eps > 0, up to ``tol.single_step``."""
    attacks = result["attacks"]
    white = [n for n in attacks if _white_box_linf(n)]
    checks = []
    for single in [n for n in white if not _attack(n).iterative]:
        for it in [
            n for n in white if _attack(n).iterative and _attack(n).loss == _attack(single).loss
        ]:
            pairs = [
                (e, attacks[single][e]["robust_accuracy"], attacks[it][e]["robust_accuracy"])
                for e in attacks[single]
                if e in attacks[it] and float(e) > 0
            ]
            checks.append(
                _check(
                    "beats-single-step",
                    it,
                    all(i <= s + tol.single_step for _, s, i in pairs),
                    f"{it} beats single-step {single}",
                    "; ".join(f"eps {e}: {single} {s:.3f}, {it} {i:.3f}" for e, s, i in pairs),
                )
            )
    return checks


def _not_stronger(
    result: dict, name: str, check_id: str, what: str, tolerance: float
) -> dict | None:
    """Whether attack ``name`` leaves at least the accuracy of the best white-box L-inf attack at
    every eps > 0 they share, up to ``tolerance``; None without a white-box attack to compare
    with."""
    attacks, table = result["attacks"], result["attacks"][name]
    rows = []
    for e in _eps(table):
        white = [(attacks[w][e], w) for w in attacks if _white_box_linf(w) and e in attacks[w]]
        if float(e) > 0 and white:
            best, label = min(white, key=lambda rw: rw[0]["robust_accuracy"])
            only = ""
            if "correct" in table[e] and all("correct" in r for r, _ in white):
                white_ok = torch.tensor([r["correct"] for r, _ in white]).all(0)
                only = (
                    f", {int((white_ok & ~torch.tensor(table[e]['correct'])).sum())} images fooled "
                    f"only by {name}"
                )
            rows.append((e, table[e]["robust_accuracy"], best["robust_accuracy"], label, only))
    if not rows:
        return None
    return _check(
        check_id,
        name,
        all(acc >= best - tolerance for _, acc, best, _, _ in rows),
        f"{name}: {what} is not stronger than the white-box attacks (else gradients are masked)",
        "; ".join(
            f"eps {e}: {acc:.3f} vs {label} {best:.3f}{only}" for e, acc, best, label, only in rows
        ),
    )


def not_stronger_than_white_box(result: dict, tol: Tolerances) -> list[dict]:
    """Gradient-free and transfer L-inf attacks are no stronger than the best white-box one."""
    checks = []
    for name in result["attacks"]:
        attack = _attack(name)
        if attack is None or attack.norm != "linf":
            continue
        if name.startswith(TRANSFER):
            check = _not_stronger(
                result, name, "transfer-not-stronger", "a transfer attack", tol.transfer
            )
        elif attack.gradient_free:
            check = _not_stronger(
                result, name, "gradient-free-not-stronger", "gradient-free", tol.transfer
            )
        else:
            check = None
        checks += [check] if check else []
    return checks


def unbounded(result: dict, tol: Tolerances) -> list[dict]:
    if "unbounded" not in result:
        return []
    u = result["unbounded"]
    return [
        _check(
            "unbounded",
            u["attack"],
            u["robust_accuracy"] <= tol.unbounded_accuracy,
            f"unbounded {u['attack']} (eps {u['eps']:g}) leaves no image correct",
            f"{u['robust_accuracy']:.4f} (at most {tol.unbounded_accuracy})",
        )
    ]


def gradients_not_vanishing(result: dict, tol: Tolerances) -> list[dict]:
    """At most ``tol.tiny_share`` of the images have a tiny margin gradient, clean or at a white-box
    attack."""
    if "gradients" not in result:
        return []
    g = result["gradients"]
    attacked = [
        (f"{name} eps {e}", row["gradients"]["tiny_share"])
        for name, table in result["attacks"].items()
        if _white_box_linf(name)
        for e, row in table.items()
        if float(e) > 0 and "gradients" in row
    ]
    worst = max(attacked, key=lambda a: a[1], default=None)
    return [
        _check(
            "gradients-not-vanishing",
            None,
            g["tiny_share"] <= tol.tiny_share and (worst is None or worst[1] <= tol.tiny_share),
            "input gradients are not vanishing, clean or attacked (a flat model masks them)",
            f"share of images with |d margin / dx| < {g['tiny']:g}: clean {g['tiny_share']:.3f}"
            + (f", attacked at most {worst[1]:.3f} ({worst[0]})" if worst else "")
            + f" (at most {tol.tiny_share})",
        )
    ]


def gradients_finite(result: dict, tol: Tolerances) -> list[dict]:
    if "gradients" not in result:
        return []
    g = result["gradients"]
    return [
        _check(
            "gradients-finite",
            None,
            g["zero_share"] == 0 and g["nonfinite_share"] == 0,
            "no zero or non-finite input gradients of the loss",
            f"zero {g['zero_share']:.3f}, non-finite {g['nonfinite_share']:.3f}",
        )
    ]


ACROSS_ATTACKS = (
    beats_single_step,
    not_stronger_than_white_box,
    unbounded,
    gradients_not_vanishing,
    gradients_finite,
)


def sanity_checks(result: dict, tolerances: Tolerances = Tolerances()) -> list[dict]:
    """The checks every trustworthy robustness table passes, in order: each attack's own checks
    (:data:`PER_ATTACK`), then those across attacks and of the model (:data:`ACROSS_ATTACKS`).

    Per attack: eps 0 gives clean accuracy, accuracy never exceeds clean and falls as eps grows,
    images are valid, and a white-box L-inf attack at eps >= 0.3 leaves at most
    ``large_eps_accuracy``. Across attacks: iterative attacks beat single-step ones on the same
    loss; gradient-free and transfer attacks leave no less than the best white-box attack minus
    ``transfer`` (else gradients are masked). Unbounded PGD (eps 1) leaves at most
    ``unbounded_accuracy``. At most ``tiny_share`` of the images have a margin gradient below the
    tiny threshold, clean or attacked, and no loss gradient is zero or not finite. Parts missing
    from ``result`` (gradients, unbounded, per-image lists) are not checked, so a saved result
    without its per-image lists can be checked again.
    """
    clean = result["clean"]["accuracy"]
    checks = [
        check(name, table, clean, tolerances)
        for name, table in result["attacks"].items()
        for check in PER_ATTACK
    ]
    checks += [c for check in ACROSS_ATTACKS for c in check(result, tolerances)]
    return [c for c in checks if c is not None]
