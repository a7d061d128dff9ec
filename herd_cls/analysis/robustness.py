"""Adversarial robustness per class, with the latent view no other tool has: where in the latent
blocks an attack moves z. The attacks are the entries of :data:`herd_cls.analysis.attacks.ATTACKS`;
every result carries the gradient-masking checks of :mod:`herd_cls.analysis.sanity`.

Images are in [0, 1]; eps is in pixel units (L-inf, or the L2 norm for an attack whose norm is
"l2").
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..layout import BlockLayout
from .attacks import TRANSFER, Budget, attack_of, check_attack_request
from .latents import evaluating
from .sanity import sanity_checks

UNBOUNDED_ATTACK = "pgd-linf"  # the probe at an eps that reaches every image
UNBOUNDED_EPS = 1.0  # L-inf eps 1 reaches every image: a working attack leaves no image correct
TINY_GRADIENT = 1e-6  # L2 norm of d margin / d x below which a model is flat around an image


def craft(
    name: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    budget: Budget,
    batch_size: int = 100,
) -> Tensor:
    """Adversarial images (N, C, H, W) of registered attack ``name`` on ``model`` for images x (N,
    C, H, W) and labels y (N,). Seeded per call (the caller's random state is untouched), so a
    request gives the same images on every model it is crafted on; eps 0 returns x. An attack
    restarted "here" (PGD) reruns from new random starts and keeps, per image, a start that
    fools."""
    if eps == 0:
        return x.clone()
    spec = attack_of(name)
    attack = spec.build(model, eps, budget)
    rounds = budget.restarts if spec.restarts == "here" else 1
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


def input_gradient_norms(
    model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 100
) -> dict[str, Tensor]:
    """Per-image L2 norms (N,) of the input gradient of the cross-entropy ("ce") and of the logit
    margin ("margin": true logit minus the largest other). The margin's gradient does not shrink as
    the softmax saturates, so a tiny one means the model is flat around the image: gradients cannot
    guide an attack."""
    ce, margin = [], []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb = xb.clone().requires_grad_(True)
        logits = model(xb)
        true = logits.gather(1, yb[:, None]).squeeze(1)
        others = logits.masked_fill(
            nn.functional.one_hot(yb, logits.shape[1]).bool(), float("-inf")
        ).amax(1)
        g_ce, g_margin = (
            torch.autograd.grad(loss, xb, retain_graph=True)[0]
            for loss in (
                nn.functional.cross_entropy(logits, yb, reduction="sum"),
                (true - others).sum(),
            )
        )
        ce.append(g_ce.flatten(1).norm(dim=1).detach())
        margin.append(g_margin.flatten(1).norm(dim=1).detach())
    return {"ce": torch.cat(ce), "margin": torch.cat(margin)}


def summarise_gradients(norms: dict[str, Tensor], tiny: float = TINY_GRADIENT) -> dict:
    """Medians of the per-image norms of :func:`input_gradient_norms`, and the shares of images
    whose margin gradient is below ``tiny``, whose loss gradient is exactly zero, or is not
    finite."""
    ce, margin = norms["ce"], norms["margin"]
    return {
        "ce_median": float(ce.nanmedian()),
        "margin_median": float(margin.nanmedian()),
        "tiny_share": float((margin < tiny).float().mean()),
        "zero_share": float((ce == 0).float().mean()),
        "nonfinite_share": float((~torch.isfinite(ce) | ~torch.isfinite(margin)).float().mean()),
    }


def _block_shares(dz: Tensor, y: Tensor, layout: BlockLayout, to: Tensor | None = None) -> dict:
    """Share of the squared latent displacement in the own block, other blocks and shared dims."""
    blocks = layout.masks.to(dz.device)
    mass = dz.pow(2)
    total = mass.sum(1).clamp_min(1e-30)
    own = (mass * blocks[y]).sum(1) / total
    shared = (mass * ~blocks.any(0)).sum(1) / total
    out = {"own": own, "other": 1 - own - shared, "shared": shared}
    if to is not None:
        out["flipped_to"] = (mass * blocks[to]).sum(1) / total
    return out


def _per_class_mean(
    values: Tensor, y: Tensor, num_classes: int, where: Tensor | None = None
) -> list:
    keep = torch.ones_like(y, dtype=torch.bool) if where is None else where
    return [
        float(values[(y == c) & keep].float().mean()) if ((y == c) & keep).any() else None
        for c in range(num_classes)
    ]


def evaluate_robustness(
    model: nn.Module,
    encode: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    layout: BlockLayout,
    attacks: list[str],
    eps: list[float],
    steps: int = 10,
    restarts: int = 1,
    queries: int = 1000,
    transfer_from: nn.Module | None = None,
    transfer_attack: str = "pgd-linf",
    batch_size: int = 100,
    progress: Callable | None = None,
) -> dict:
    """Clean and robust accuracy per attack, eps and class, latent displacement by block,
    input-gradient norms at the clean and attacked images, and the sanity checks of
    :func:`herd_cls.analysis.sanity.sanity_checks`.

    Args:
        model: images in [0, 1] -> logits (attacked in eval mode; its own mode is restored). encode:
            images -> z.
        x, y: the images (N, C, H, W) and labels (N,) to attack; layout: the class blocks of z.
        attacks: names registered in :data:`herd_cls.analysis.attacks.ATTACKS`.
        steps, restarts, queries: the attacks' budget (queries: gradient-free attacks' model
            evaluations per image).
        transfer_from: another model (same classes and image shape); ``transfer_attack`` crafted on
            it at every eps is then evaluated on ``model`` as the attack
            "transfer-<transfer_attack>".
    Returns:
        {"clean": {...}, "attacks": {name: {eps: {...}}}, "worst_case": {norm: {eps: {...}}},
         "gradients": {...}, "unbounded": {...}, "checks": [...]}
    """
    budget = Budget(steps, restarts, queries, layout.num_classes)
    check_attack_request(
        attacks,
        eps,
        budget.num_classes,
        transfer_attack if transfer_from is not None else None,
        budget,
    )
    plan = [(name, model) for name in attacks]  # (result name, the model it is crafted on)
    if transfer_from is not None:
        plan.append((TRANSFER + transfer_attack, transfer_from))
    with evaluating(model), evaluating(transfer_from):
        return _evaluate(model, encode, x, y, layout, plan, eps, budget, batch_size, progress)


def _predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(b).argmax(1) for b in x.split(batch_size)])


def _encode(encode: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([encode(b) for b in x.split(batch_size)])


def _attack_row(model, encode, x, y, z, adv, layout, clean_ok, norm, batch_size) -> dict:
    """One attack at one eps: accuracy, success, confusion, perturbation size, where z moved,
    gradients."""
    num_classes = layout.num_classes
    adv_pred = _predict(model, adv, batch_size)
    dz = _encode(encode, adv, batch_size) - z
    ok = adv_pred == y
    flipped = clean_ok & ~ok
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((y, adv_pred), torch.ones_like(y), accumulate=True)
    shares = _block_shares(dz, y, layout, adv_pred)
    moved = dz.pow(2).sum(1) > 0
    return {
        "robust_accuracy": float(ok.float().mean()),
        "per_class": _per_class_mean(ok, y, num_classes),
        "correct": ok.tolist(),
        "success_rate": float(flipped.sum() / clean_ok.sum().clamp_min(1)),
        "confusion": confusion.tolist(),
        "max_perturbation": float(
            (adv - x).flatten(1).norm(p=float("inf") if norm == "linf" else 2, dim=1).max()
        ),
        "valid_images": bool(torch.isfinite(adv).all() and adv.min() >= 0 and adv.max() <= 1),
        "latent_shift": {
            part: _per_class_mean(v, y, num_classes, moved)
            for part, v in shares.items()
            if part != "flipped_to"
        },
        "latent_shift_to_new_class": _per_class_mean(shares["flipped_to"], y, num_classes, flipped),
        "gradients": summarise_gradients(input_gradient_norms(model, adv, y, batch_size)),
    }


def _evaluate(model, encode, x, y, layout, plan, eps, budget, batch_size, progress) -> dict:
    num_classes = layout.num_classes
    z = _encode(encode, x, batch_size)
    clean_ok = _predict(model, x, batch_size) == y
    clean_norms = input_gradient_norms(model, x, y, batch_size)
    result = {
        "n_samples": len(y),
        "clean": {
            "accuracy": float(clean_ok.float().mean()),
            "per_class": _per_class_mean(clean_ok, y, num_classes),
        },
        "attacks": {},
        "worst_case": {},
        "gradients": {
            "tiny": TINY_GRADIENT,
            **summarise_gradients(clean_norms),
            "ce": clean_norms["ce"].tolist(),
            "margin": clean_norms["margin"].tolist(),
        },
    }
    worst: dict = {}
    for name, source in plan:
        result["attacks"][name] = {}
        norm = attack_of(name).norm
        for e in eps:
            adv = craft(name.removeprefix(TRANSFER), source, x, y, e, budget, batch_size)
            row = result["attacks"][name][str(e)] = _attack_row(
                model, encode, x, y, z, adv, layout, clean_ok, norm, batch_size
            )
            key = (norm, str(e))
            worst[key] = worst.get(key, torch.ones_like(y, dtype=torch.bool)) & torch.tensor(
                row["correct"]
            )
            if progress:
                progress()
    result["worst_case"] = _worst_case(worst, y, num_classes)
    result["unbounded"] = _unbounded(model, x, y, budget, batch_size)
    result["checks"] = sanity_checks(result)
    return result


def _worst_case(worst: dict[tuple[str, str], Tensor], y: Tensor, num_classes: int) -> dict:
    """norm -> eps -> robust accuracy, overall and per class, of ``worst``: (norm, eps) -> (N,)
    whether an image survived every attack of that norm at that eps."""
    out: dict = {}
    for (norm, e), ok in worst.items():
        out.setdefault(norm, {})[e] = {
            "robust_accuracy": float(ok.float().mean()),
            "per_class": _per_class_mean(ok, y, num_classes),
        }
    return out


def _unbounded(model: nn.Module, x: Tensor, y: Tensor, budget: Budget, batch_size: int) -> dict:
    """The probe at an eps that reaches every image: a working attack leaves none correct."""
    adv = craft(UNBOUNDED_ATTACK, model, x, y, UNBOUNDED_EPS, budget, batch_size)
    unbounded = _predict(model, adv, batch_size) == y
    return {
        "attack": UNBOUNDED_ATTACK,
        "eps": UNBOUNDED_EPS,
        "robust_accuracy": float(unbounded.float().mean()),
    }
