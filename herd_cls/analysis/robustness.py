"""Adversarial robustness per class, through torchattacks, with the latent view no other tool has:
where in the latent blocks an attack moves z; and the checks that tell real robustness from gradient
masking (Carlini et al. 2019, "On evaluating adversarial robustness").

Images are in [0, 1]; eps is in pixel units (L-inf, or the L2 norm for ``pgd-l2``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ..registry import HerdError, Registry
from .latents import evaluating

ATTACKS: Registry = Registry("attack")
NORMS = {"fgsm": "linf", "pgd-linf": "linf", "apgd-ce": "linf", "apgd-dlr": "linf", "autoattack": "linf",
         "pgd-l2": "l2", "square": "linf"}
MIN_CLASSES = {"apgd-dlr": 3, "autoattack": 3}  # the DLR loss reads the third-largest logit
GRADIENT_FREE = {"square"}
WHITE_BOX = ("fgsm", "pgd-linf", "apgd-ce", "apgd-dlr")  # the gradient attacks the masking checks compare with
RESTARTED_HERE = {"pgd-linf", "pgd-l2"}  # random starts rerun here; APGD, Square and AutoAttack restart themselves
TRANSFER = "transfer-"  # result name of an attack crafted on another model: "transfer-pgd-linf"
UNBOUNDED_EPS = 1.0  # L-inf eps 1 reaches every image: a working attack leaves no image correct
TINY_GRADIENT = 1e-6  # L2 norm of d margin / d x below which a model is flat around an image


@dataclass(frozen=True)
class Budget:
    """What every attack may spend: iterations, restarts, Square's queries; and the class count."""

    steps: int = 10
    restarts: int = 1
    queries: int = 1000
    num_classes: int = 10


@ATTACKS.register("fgsm")
def _fgsm(model, eps, budget):
    import torchattacks

    return torchattacks.FGSM(model, eps=eps)


@ATTACKS.register("pgd-linf")
def _pgd(model, eps, budget):
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / budget.steps, steps=budget.steps, random_start=True)


@ATTACKS.register("pgd-l2")
def _pgd_l2(model, eps, budget):
    import torchattacks

    return torchattacks.PGDL2(model, eps=eps, alpha=2.5 * eps / budget.steps, steps=budget.steps, random_start=True)


@ATTACKS.register("apgd-ce")
def _apgd_ce(model, eps, budget):
    import torchattacks

    return torchattacks.APGD(model, norm="Linf", eps=eps, steps=budget.steps, n_restarts=budget.restarts, loss="ce",
                             seed=0)


@ATTACKS.register("apgd-dlr")
def _apgd_dlr(model, eps, budget):
    import torchattacks

    return torchattacks.APGD(model, norm="Linf", eps=eps, steps=budget.steps, n_restarts=budget.restarts, loss="dlr",
                             seed=0)


@ATTACKS.register("square")
def _square(model, eps, budget):
    import torchattacks

    # gradient-free: random square updates of the margin loss, so masked gradients do not stop it
    return torchattacks.Square(model, norm="Linf", eps=eps, n_queries=budget.queries, n_restarts=budget.restarts,
                               seed=0)


@ATTACKS.register("autoattack")
def _autoattack(model, eps, budget):
    import torchattacks

    # n_classes sets the targets of APGD-T and FAB-T: K - 1 of them, so small class counts work
    return torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=budget.num_classes,
                                   seed=0)


def norm_of(name: str) -> str:
    """"linf" or "l2" for an attack name, transfer attacks included."""
    return NORMS[name.removeprefix(TRANSFER)]


def check_attack_request(attacks: list[str], eps: list[float], num_classes: int, transfer_attack: str | None = None,
                         budget: Budget | None = None) -> None:
    """Refuse unknown attacks, eps outside [0, 1], class counts an attack cannot handle, a gradient-free
    transfer attack and budgets below 1."""
    for name in attacks + ([transfer_attack] if transfer_attack else []):
        ATTACKS.get(name)
        if num_classes < MIN_CLASSES.get(name, 2):
            raise HerdError(f"attack {name} needs at least {MIN_CLASSES[name]} classes, this run has {num_classes}; "
                            "use fgsm, pgd-linf, pgd-l2, apgd-ce or square")
    if transfer_attack in GRADIENT_FREE:
        raise HerdError(f"--transfer-attack {transfer_attack} uses no gradients, so it has nothing to transfer; "
                        f"use one of {', '.join(WHITE_BOX)}")
    bad = [e for e in eps if not 0 <= e <= 1]
    if bad:
        raise HerdError(f"eps {bad} outside [0, 1]: eps is in pixel units of images in [0, 1]")
    if budget is not None and min(budget.steps, budget.restarts, budget.queries) < 1:
        raise HerdError("--steps, --restarts and --queries must be at least 1")


def craft(name: str, model: nn.Module, x: Tensor, y: Tensor, eps: float, budget: Budget,
          batch_size: int = 100) -> Tensor:
    """Adversarial images (N, C, H, W) of attack ``name`` on ``model`` for images x (N, C, H, W) and labels
    y (N,). Seeded per call (the caller's random state is untouched), so a request gives the same images
    on every model it is crafted on; eps 0 returns x. PGD restarts keep, per image, a start that fools."""
    if eps == 0:
        return x.clone()
    attack = ATTACKS.get(name)(model, eps, budget)
    rounds = budget.restarts if name in RESTARTED_HERE else 1
    out = []
    with torch.random.fork_rng(devices=[x.device.index or 0] if x.is_cuda else []):
        torch.manual_seed(0)
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            adv = attack(xb, yb)
            for _ in range(rounds - 1):
                with torch.no_grad():
                    fooled = model(adv).argmax(1) != yb
                if fooled.all():
                    break
                adv = torch.where(fooled[:, None, None, None], adv, attack(xb, yb))
            out.append(adv.detach())
    return torch.cat(out)


def input_gradient_norms(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 100) -> dict[str, Tensor]:
    """Per-image L2 norms (N,) of the input gradient of the cross-entropy ("ce") and of the logit margin
    ("margin": true logit minus the largest other). The margin's gradient does not shrink as the softmax
    saturates, so a tiny one means the model is flat around the image: gradients cannot guide an attack."""
    ce, margin = [], []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb = xb.clone().requires_grad_(True)
        logits = model(xb)
        true = logits.gather(1, yb[:, None]).squeeze(1)
        others = logits.masked_fill(nn.functional.one_hot(yb, logits.shape[1]).bool(), float("-inf")).amax(1)
        g_ce, g_margin = (torch.autograd.grad(loss, xb, retain_graph=True)[0]
                          for loss in (nn.functional.cross_entropy(logits, yb, reduction="sum"), (true - others).sum()))
        ce.append(g_ce.flatten(1).norm(dim=1).detach())
        margin.append(g_margin.flatten(1).norm(dim=1).detach())
    return {"ce": torch.cat(ce), "margin": torch.cat(margin)}


def summarise_gradients(norms: dict[str, Tensor], tiny: float = TINY_GRADIENT) -> dict:
    """Medians of the per-image norms of :func:`input_gradient_norms`, and the shares of images whose
    margin gradient is below ``tiny``, whose loss gradient is exactly zero, or is not finite."""
    ce, margin = norms["ce"], norms["margin"]
    return {"ce_median": float(ce.nanmedian()), "margin_median": float(margin.nanmedian()),
            "tiny_share": float((margin < tiny).float().mean()), "zero_share": float((ce == 0).float().mean()),
            "nonfinite_share": float((~torch.isfinite(ce) | ~torch.isfinite(margin)).float().mean())}


def _block_shares(dz: Tensor, y: Tensor, blocks: Tensor, to: Tensor | None = None) -> dict:
    """Share of the squared latent displacement in the own block, other blocks and shared dims."""
    mass = dz.pow(2)
    total = mass.sum(1).clamp_min(1e-30)
    own = (mass * blocks[y]).sum(1) / total
    shared = (mass * ~blocks.any(0)).sum(1) / total
    out = {"own": own, "other": 1 - own - shared, "shared": shared}
    if to is not None:
        out["flipped_to"] = (mass * blocks[to]).sum(1) / total
    return out


def _per_class_mean(values: Tensor, y: Tensor, num_classes: int, where: Tensor | None = None) -> list:
    keep = torch.ones_like(y, dtype=torch.bool) if where is None else where
    return [float(values[(y == c) & keep].float().mean()) if ((y == c) & keep).any() else None
            for c in range(num_classes)]


def evaluate_robustness(model: nn.Module, encode: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, blocks: Tensor,
                        attacks: list[str], eps: list[float], steps: int = 10, restarts: int = 1, queries: int = 1000,
                        transfer_from: nn.Module | None = None, transfer_attack: str = "pgd-linf",
                        batch_size: int = 100, progress: Callable | None = None) -> dict:
    """Clean and robust accuracy per attack, eps and class, latent displacement by block, input-gradient
    norms at the clean and attacked images, and the sanity checks of :func:`sanity_checks`.

    Args:
        model: images in [0, 1] -> logits (attacked in eval mode; its own mode is restored). encode: images -> z.
        x, y: the images (N, C, H, W) and labels (N,) to attack; blocks: (K, d) class blocks.
        steps, restarts, queries: the attacks' budget (queries: Square's model evaluations per image).
        transfer_from: another model (same classes and image shape); ``transfer_attack`` crafted on it at
            every eps is then evaluated on ``model`` as the attack "transfer-<transfer_attack>".
    Returns:
        {"clean": {...}, "attacks": {name: {eps: {...}}}, "worst_case": {norm: {eps: {...}}},
         "gradients": {...}, "unbounded": {...}, "checks": [...]}
    """
    budget = Budget(steps, restarts, queries, blocks.shape[0])
    check_attack_request(attacks, eps, budget.num_classes, transfer_attack if transfer_from is not None else None,
                         budget)
    with evaluating(model), evaluating(transfer_from):
        return _evaluate(model, encode, x, y, blocks, attacks, eps, budget, transfer_from, transfer_attack,
                         batch_size, progress)


def _predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(b).argmax(1) for b in x.split(batch_size)])


def _evaluate(model, encode, x, y, blocks, attacks, eps, budget, transfer_from, transfer_attack, batch_size,
              progress) -> dict:
    num_classes = blocks.shape[0]
    with torch.no_grad():
        z = torch.cat([encode(b) for b in x.split(batch_size)])
    clean_ok = _predict(model, x, batch_size) == y
    clean_norms = input_gradient_norms(model, x, y, batch_size)
    result = {"n_samples": len(y), "clean": {"accuracy": float(clean_ok.float().mean()),
                                             "per_class": _per_class_mean(clean_ok, y, num_classes)},
              "attacks": {}, "worst_case": {},
              "gradients": {"tiny": TINY_GRADIENT, **summarise_gradients(clean_norms),
                            "ce": clean_norms["ce"].tolist(), "margin": clean_norms["margin"].tolist()}}
    plan = [(name, model) for name in attacks]
    if transfer_from is not None:
        plan.append((TRANSFER + transfer_attack, transfer_from))
    worst: dict = {}
    for name, source in plan:
        result["attacks"][name] = {}
        for e in eps:
            adv = craft(name.removeprefix(TRANSFER), source, x, y, e, budget, batch_size)
            adv_pred = _predict(model, adv, batch_size)
            with torch.no_grad():
                dz = torch.cat([encode(b) for b in adv.split(batch_size)]) - z
            ok = adv_pred == y
            flipped = clean_ok & ~ok
            confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
            confusion.index_put_((y, adv_pred), torch.ones_like(y), accumulate=True)
            shares = _block_shares(dz, y, blocks, adv_pred)
            moved = dz.pow(2).sum(1) > 0
            result["attacks"][name][str(e)] = {
                "robust_accuracy": float(ok.float().mean()),
                "per_class": _per_class_mean(ok, y, num_classes),
                "correct": ok.tolist(),
                "success_rate": float(flipped.sum() / clean_ok.sum().clamp_min(1)),
                "confusion": confusion.tolist(),
                "max_perturbation": float((adv - x).flatten(1).norm(
                    p=float("inf") if norm_of(name) == "linf" else 2, dim=1).max()),
                "valid_images": bool(torch.isfinite(adv).all() and adv.min() >= 0 and adv.max() <= 1),
                "latent_shift": {part: _per_class_mean(v, y, num_classes, moved) for part, v in shares.items()
                                 if part != "flipped_to"},
                "latent_shift_to_new_class": _per_class_mean(shares["flipped_to"], y, num_classes, flipped),
                "gradients": summarise_gradients(input_gradient_norms(model, adv, y, batch_size)),
            }
            key = (norm_of(name), str(e))
            worst[key] = worst.get(key, torch.ones_like(ok)) & ok
            if progress:
                progress()
    for (norm, e), ok in worst.items():
        result["worst_case"].setdefault(norm, {})[e] = {"robust_accuracy": float(ok.float().mean()),
                                                        "per_class": _per_class_mean(ok, y, num_classes)}
    unbounded = _predict(model, craft("pgd-linf", model, x, y, UNBOUNDED_EPS, budget, batch_size), batch_size) == y
    result["unbounded"] = {"attack": "pgd-linf", "eps": UNBOUNDED_EPS, "robust_accuracy": float(unbounded.float().mean())}
    result["checks"] = sanity_checks(result)
    return result


def _check(name: str, passed: bool, detail: str) -> dict:
    return {"check": name, "passed": bool(passed), "detail": detail}


def _not_stronger(result: dict, name: str, what: str, tolerance: float) -> dict | None:
    """Whether attack ``name`` leaves at least the accuracy of the best white-box L-inf attack at every
    eps > 0 they share, up to ``tolerance``; None without a white-box attack to compare with."""
    table = result["attacks"][name]
    rows = []
    for e in sorted(table, key=float):
        white = [(result["attacks"][w][e], w) for w in WHITE_BOX if w in result["attacks"] and e in result["attacks"][w]]
        if float(e) > 0 and white:
            best, label = min(white, key=lambda rw: rw[0]["robust_accuracy"])
            only = ""
            if "correct" in table[e]:
                white_ok = torch.tensor([r["correct"] for r, _ in white]).all(0)
                only = f", {int((white_ok & ~torch.tensor(table[e]['correct'])).sum())} images fooled only by {name}"
            rows.append((e, table[e]["robust_accuracy"], best["robust_accuracy"], label, only))
    if not rows:
        return None
    return _check(f"{name}: {what} is not stronger than the white-box attacks (else gradients are masked)",
                  all(acc >= best - tolerance for _, acc, best, _, _ in rows),
                  "; ".join(f"eps {e}: {acc:.3f} vs {label} {best:.3f}{only}" for e, acc, best, label, only in rows))


def sanity_checks(result: dict, tolerance: float = 1e-9, transfer_tolerance: float = 0.01,
                  large_eps_accuracy: float = 0.1, unbounded_accuracy: float = 0.02,
                  tiny_share: float = 0.05) -> list[dict]:
    """The checks every trustworthy robustness table passes; each {"check", "passed", "detail"}.

    Per attack: eps 0 gives clean accuracy, accuracy never exceeds clean and falls as eps grows, images
    are valid, and a white-box L-inf attack at eps >= 0.3 leaves at most ``large_eps_accuracy``. Across
    attacks: iterative attacks beat FGSM; Square (gradient-free) and transfer attacks leave no less than
    the best white-box attack minus ``transfer_tolerance`` (else gradients are masked). Unbounded PGD
    (eps 1) leaves at most ``unbounded_accuracy``. At most ``tiny_share`` of the images have a margin
    gradient below the tiny threshold, clean or attacked, and no loss gradient is zero or not finite.
    Parts missing from ``result`` (gradients, unbounded) are not checked.
    """
    clean = result["clean"]["accuracy"]
    checks = []
    for name, table in result["attacks"].items():
        eps = sorted(table, key=float)
        accs = [table[e]["robust_accuracy"] for e in eps]
        zero = next((table[e]["robust_accuracy"] for e in eps if float(e) == 0), None)
        if zero is not None:
            checks.append(_check(f"{name}: eps = 0 reproduces clean accuracy", abs(zero - clean) <= tolerance,
                                 f"{zero:.4f} vs clean {clean:.4f}"))
        checks.append(_check(f"{name}: robust accuracy never exceeds clean", max(accs) <= clean + tolerance,
                             f"max {max(accs):.4f} vs clean {clean:.4f}"))
        checks.append(_check(f"{name}: accuracy falls as eps grows", all(b <= a + tolerance for a, b in zip(accs, accs[1:])),
                             " → ".join(f"{a:.3f}" for a in accs)))
        if all("valid_images" in table[e] for e in eps):
            checks.append(_check(
                f"{name}: adversarial images are finite, in [0, 1] and within eps",
                all(table[e]["valid_images"] and table[e]["max_perturbation"] <= float(e) + 1e-5 for e in eps),
                ", ".join(f"eps {e}: max {table[e]['max_perturbation']:.4f}" for e in eps)))
        if name in WHITE_BOX and norm_of(name) == "linf" and float(eps[-1]) >= 0.3:
            checks.append(_check(f"{name}: large eps drives accuracy to about 0", accs[-1] <= large_eps_accuracy,
                                 f"{accs[-1]:.4f} at eps {eps[-1]} (at most {large_eps_accuracy})"))
    if "fgsm" in result["attacks"]:
        for it in ("pgd-linf", "apgd-ce"):
            if it in result["attacks"]:
                pairs = [(e, result["attacks"]["fgsm"][e]["robust_accuracy"], result["attacks"][it][e]["robust_accuracy"])
                         for e in result["attacks"]["fgsm"] if e in result["attacks"][it] and float(e) > 0]
                checks.append(_check(f"{it} beats single-step fgsm", all(i <= f + 0.02 for _, f, i in pairs),
                                     "; ".join(f"eps {e}: fgsm {f:.3f}, {it} {i:.3f}" for e, f, i in pairs)))
    for name in result["attacks"]:
        what = "gradient-free" if name in GRADIENT_FREE else "a transfer attack" if name.startswith(TRANSFER) else None
        check = what and norm_of(name) == "linf" and _not_stronger(result, name, what, transfer_tolerance)
        if check:
            checks.append(check)
    if "unbounded" in result:
        u = result["unbounded"]
        checks.append(_check(f"unbounded {u['attack']} (eps {u['eps']:g}) leaves no image correct",
                             u["robust_accuracy"] <= unbounded_accuracy,
                             f"{u['robust_accuracy']:.4f} (at most {unbounded_accuracy})"))
    if "gradients" in result:
        g = result["gradients"]
        attacked = [(f"{name} eps {e}", row["gradients"]["tiny_share"]) for name, table in result["attacks"].items()
                    if name in WHITE_BOX for e, row in table.items() if float(e) > 0 and "gradients" in row]
        worst = max(attacked, key=lambda a: a[1], default=None)
        checks.append(_check(
            "input gradients are not vanishing, clean or attacked (a flat model masks them)",
            g["tiny_share"] <= tiny_share and (worst is None or worst[1] <= tiny_share),
            f"share of images with |d margin / dx| < {g['tiny']:g}: clean {g['tiny_share']:.3f}"
            + (f", attacked at most {worst[1]:.3f} ({worst[0]})" if worst else "") + f" (at most {tiny_share})"))
        checks.append(_check("no zero or non-finite input gradients of the loss",
                             g["zero_share"] == 0 and g["nonfinite_share"] == 0,
                             f"zero {g['zero_share']:.3f}, non-finite {g['nonfinite_share']:.3f}"))
    return checks
