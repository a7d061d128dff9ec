"""Adversarial robustness per class, through torchattacks, with the latent view no other tool has:
where in the latent blocks an attack moves z.

Images are in [0, 1]; eps is in pixel units (L-inf, or the L2 norm for ``pgd-l2``).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..registry import HerdError, Registry
from .latents import evaluating

ATTACKS: Registry = Registry("attack")
NORMS = {"fgsm": "linf", "pgd-linf": "linf", "apgd-ce": "linf", "apgd-dlr": "linf", "autoattack": "linf",
         "pgd-l2": "l2"}
MIN_CLASSES = {"apgd-dlr": 3, "autoattack": 3}  # the DLR loss reads the third-largest logit


@ATTACKS.register("fgsm")
def _fgsm(model, eps, steps, restarts, num_classes):
    import torchattacks

    return torchattacks.FGSM(model, eps=eps)


@ATTACKS.register("pgd-linf")
def _pgd(model, eps, steps, restarts, num_classes):
    import torchattacks

    return torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)


@ATTACKS.register("pgd-l2")
def _pgd_l2(model, eps, steps, restarts, num_classes):
    import torchattacks

    return torchattacks.PGDL2(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)


@ATTACKS.register("apgd-ce")
def _apgd_ce(model, eps, steps, restarts, num_classes):
    import torchattacks

    return torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=restarts, loss="ce", seed=0)


@ATTACKS.register("apgd-dlr")
def _apgd_dlr(model, eps, steps, restarts, num_classes):
    import torchattacks

    return torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=restarts, loss="dlr", seed=0)


@ATTACKS.register("autoattack")
def _autoattack(model, eps, steps, restarts, num_classes):
    import torchattacks

    # n_classes sets the targets of APGD-T and FAB-T: K - 1 of them, so small class counts work
    return torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=num_classes, seed=0)


def check_attack_request(attacks: list[str], eps: list[float], num_classes: int) -> None:
    """Refuse unknown attacks, eps outside [0, 1] and class counts an attack cannot handle."""
    for name in attacks:
        ATTACKS.get(name)
        if num_classes < MIN_CLASSES.get(name, 2):
            raise HerdError(f"attack {name} needs at least {MIN_CLASSES[name]} classes, this run has {num_classes}; "
                            "use fgsm, pgd-linf, pgd-l2 or apgd-ce")
    bad = [e for e in eps if not 0 <= e <= 1]
    if bad:
        raise HerdError(f"eps {bad} outside [0, 1]: eps is in pixel units of images in [0, 1]")


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


def gradient_health(model: nn.Module, x: Tensor, y: Tensor) -> dict:
    """Fractions of samples whose input gradient of the loss is all zero or not finite (gradient masking)."""
    x = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    flat = g.flatten(1)
    return {"zero_gradient": float((flat.abs().sum(1) == 0).float().mean()),
            "nonfinite_gradient": float((~torch.isfinite(flat).all(1)).float().mean())}


def evaluate_robustness(model: nn.Module, encode: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, blocks: Tensor,
                        attacks: list[str], eps: list[float], steps: int = 10, restarts: int = 1,
                        batch_size: int = 100, progress: Callable | None = None) -> dict:
    """Clean and robust accuracy per attack, eps and class, with latent displacement by block.

    Args:
        model: images in [0, 1] -> logits (attacked in eval mode; its own mode is restored). encode: images -> z.
        x, y: the images and labels to attack; blocks: (K, d) class blocks.
    Returns:
        {"clean": {...}, "attacks": {name: {eps: {...}}}, "worst_case": {norm: {eps: {...}}}, "gradients": {...}}
    """
    num_classes = blocks.shape[0]
    check_attack_request(attacks, eps, num_classes)
    with evaluating(model):
        return _evaluate(model, encode, x, y, blocks, attacks, eps, steps, restarts, batch_size, progress)


def _evaluate(model, encode, x, y, blocks, attacks, eps, steps, restarts, batch_size, progress) -> dict:
    num_classes = blocks.shape[0]
    with torch.no_grad():
        z = torch.cat([encode(b) for b in x.split(batch_size)])
        clean_pred = torch.cat([model(b).argmax(1) for b in x.split(batch_size)])
    clean_ok = clean_pred == y
    result = {"n_samples": len(y), "clean": {"accuracy": float(clean_ok.float().mean()),
                                             "per_class": _per_class_mean(clean_ok, y, num_classes)},
              "attacks": {}, "worst_case": {}, "gradients": gradient_health(model, x[:batch_size], y[:batch_size])}
    worst: dict = {}
    for name in attacks:
        result["attacks"][name] = {}
        for e in eps:
            attack = ATTACKS.get(name)(model, e, steps, restarts, num_classes)
            if e == 0 and name == "pgd-l2":  # torchattacks' PGDL2 divides 0 by 0 at eps = 0 (NaN images)
                adv = x.clone()
            else:
                adv = torch.cat([attack(xb, yb) for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
            with torch.no_grad():
                adv_pred = torch.cat([model(b).argmax(1) for b in adv.split(batch_size)])
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
                "success_rate": float(flipped.sum() / clean_ok.sum().clamp_min(1)),
                "confusion": confusion.tolist(),
                "max_perturbation": float((adv - x).detach().flatten(1).norm(
                    p=float("inf") if NORMS[name] == "linf" else 2, dim=1).max()),
                "valid_images": bool(torch.isfinite(adv).all() and adv.min() >= 0 and adv.max() <= 1),
                "latent_shift": {part: _per_class_mean(v, y, num_classes, moved) for part, v in shares.items()
                                 if part != "flipped_to"},
                "latent_shift_to_new_class": _per_class_mean(shares["flipped_to"], y, num_classes, flipped),
            }
            key = (NORMS[name], str(e))
            worst[key] = worst.get(key, torch.ones_like(ok)) & ok
            if progress:
                progress()
    for (norm, e), ok in worst.items():
        result["worst_case"].setdefault(norm, {})[e] = {"robust_accuracy": float(ok.float().mean()),
                                                        "per_class": _per_class_mean(ok, y, num_classes)}
    result["checks"] = sanity_checks(result)
    return result


def sanity_checks(result: dict, tolerance: float = 1e-9) -> list[dict]:
    """The checks every trustworthy robustness table passes; each {"check", "passed", "detail"}."""
    clean = result["clean"]["accuracy"]
    checks = []

    def add(name, passed, detail):
        checks.append({"check": name, "passed": bool(passed), "detail": detail})

    for name, table in result["attacks"].items():
        eps = sorted(table, key=float)
        accs = [table[e]["robust_accuracy"] for e in eps]
        if "0" in table or "0.0" in table:
            zero = table.get("0", table.get("0.0"))["robust_accuracy"]
            add(f"{name}: eps = 0 reproduces clean accuracy", abs(zero - clean) <= tolerance,
                f"{zero:.4f} vs clean {clean:.4f}")
        add(f"{name}: robust accuracy never exceeds clean", max(accs) <= clean + tolerance,
            f"max {max(accs):.4f} vs clean {clean:.4f}")
        add(f"{name}: accuracy falls as eps grows", all(b <= a + tolerance for a, b in zip(accs, accs[1:])),
            " → ".join(f"{a:.3f}" for a in accs))
        add(f"{name}: adversarial images are finite, in [0, 1] and within eps",
            all(table[e]["valid_images"] and table[e]["max_perturbation"] <= float(e) + 1e-5 for e in eps),
            ", ".join(f"eps {e}: max {table[e]['max_perturbation']:.4f}" for e in eps))
        if NORMS[name] == "linf" and float(eps[-1]) >= 0.3:
            add(f"{name}: large eps drives accuracy to about 0", accs[-1] <= 0.1,
                f"{accs[-1]:.4f} at eps {eps[-1]}")
    if "fgsm" in result["attacks"]:
        for it in ("pgd-linf", "apgd-ce"):
            if it in result["attacks"]:
                pairs = [(e, result["attacks"]["fgsm"][e]["robust_accuracy"], result["attacks"][it][e]["robust_accuracy"])
                         for e in result["attacks"]["fgsm"] if e in result["attacks"][it] and float(e) > 0]
                add(f"{it} beats single-step fgsm", all(i <= f + 0.02 for _, f, i in pairs),
                    "; ".join(f"eps {e}: fgsm {f:.3f}, {it} {i:.3f}" for e, f, i in pairs))
    g = result["gradients"]
    add("no zero or non-finite input gradients (gradient masking)", g["zero_gradient"] == 0 and g["nonfinite_gradient"] == 0,
        f"zero {g['zero_gradient']:.3f}, non-finite {g['nonfinite_gradient']:.3f}")
    return checks
