"""The attacks, one registry entry each: an :class:`Attack` says its norm, whether it reads
gradients, who restarts it, the fewest classes it handles and whether the gradient-masking checks
compare against it.

Images are in [0, 1]; eps is in pixel units (the L-inf norm, or the L2 norm for an ``"l2"`` attack).
Adding an attack is one ``ATTACKS.add(Attack(...))`` call; the CLI, the evaluation, the sanity
checks and the report page read everything else from the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

from ..registry import HerdError, Registry

TRANSFER = "transfer-"  # result name of an attack crafted on another model: "transfer-pgd-linf"
NORM_KINDS = ("linf", "l2")
RESTART_KINDS = ("none", "itself", "here")


@dataclass(frozen=True)
class Budget:
    """What every attack may spend: iterations, restarts, gradient-free queries; and the class
    count."""

    steps: int = 10
    restarts: int = 1
    queries: int = 1000
    num_classes: int = 10


@dataclass(frozen=True)
class Attack:
    """One attack and what the evaluation needs to know about it.

    Args:
        name: the ``--attack`` name. norm: "linf" or "l2", the norm eps bounds.
        build: (model, eps, budget) -> a callable (images, labels) -> adversarial images, e.g. a
            torchattacks attack.
        help: a few words for ``--help`` and the report page.
        gradient_free: reads only the model's outputs, so masked gradients do not stop it (and it
            has nothing to transfer from another model).
        restarts: "itself" (takes ``budget.restarts``), "here" (random starts rerun by the
            evaluation, which keeps per image a start that fools) or "none" (a single deterministic
            step).
        min_classes: the fewest classes the attack handles.
        white_box: the masking checks compare gradient-free and transfer attacks against it, and
            hold it to driving accuracy to about 0 at a large eps.
        loss: what it maximises ("ce": the cross-entropy); an iterative white-box attack must beat a
            single-step one on the same loss.
    """

    name: str
    norm: str
    build: Callable[[nn.Module, float, Budget], Callable[[Tensor, Tensor], Tensor]]
    help: str
    gradient_free: bool = False
    restarts: str = "itself"
    min_classes: int = 2
    white_box: bool = False
    loss: str = "ce"

    def __post_init__(self):
        if self.norm not in NORM_KINDS or self.restarts not in RESTART_KINDS:
            raise ValueError(
                f"attack {self.name}: norm must be one of {NORM_KINDS}, restarts one of "
                f"{RESTART_KINDS}"
            )

    @property
    def iterative(self) -> bool:
        return self.restarts != "none"


ATTACKS: Registry[Attack] = Registry("attack")


def _ta():
    import torchattacks  # slow to import: only when an attack is built

    return torchattacks


def _pgd(kind: str):
    """torchattacks' ``kind`` (PGD or PGDL2) from a random start, steps of 2.5 eps / steps."""
    return lambda m, eps, b: getattr(_ta(), kind)(
        m, eps=eps, alpha=2.5 * eps / b.steps, steps=b.steps, random_start=True
    )


def _linf(kind: str, options: Callable[[Budget], dict]):
    """torchattacks' L-inf ``kind`` with seed 0 and the keyword ``options`` a budget sets."""
    return lambda m, eps, b: getattr(_ta(), kind)(m, norm="Linf", eps=eps, seed=0, **options(b))


def _apgd(loss: str):
    """torchattacks' L-inf auto-PGD on ``loss`` ("ce" or "dlr")."""
    return _linf("APGD", lambda b: dict(steps=b.steps, n_restarts=b.restarts, loss=loss))


ATTACKS.add(
    Attack(
        "fgsm",
        "linf",
        lambda m, eps, b: _ta().FGSM(m, eps=eps),
        "one signed-gradient step",
        restarts="none",
        white_box=True,
    )
)
ATTACKS.add(
    Attack(
        "pgd-linf",
        "linf",
        _pgd("PGD"),
        "projected gradient descent from a random start",
        restarts="here",
        white_box=True,
    )
)
ATTACKS.add(
    Attack(
        "pgd-l2",
        "l2",
        _pgd("PGDL2"),
        "PGD with a true L2 step; eps is an L2 norm",
        restarts="here",
    )
)
ATTACKS.add(Attack("apgd-ce", "linf", _apgd("ce"), "auto-PGD on the cross-entropy", white_box=True))
# the DLR loss reads the third-largest logit
ATTACKS.add(
    Attack(
        "apgd-dlr",
        "linf",
        _apgd("dlr"),
        "auto-PGD on the difference-of-logits ratio",
        min_classes=3,
        white_box=True,
        loss="dlr",
    )
)
# random square updates of the margin loss, so masked gradients do not stop it
ATTACKS.add(
    Attack(
        "square",
        "linf",
        _linf("Square", lambda b: dict(n_queries=b.queries, n_restarts=b.restarts)),
        "random square-shaped updates, no gradients; --queries per image",
        gradient_free=True,
        loss="margin",
    )
)
# n_classes sets the targets of APGD-T and FAB-T: K - 1 of them, so small class counts work
ATTACKS.add(
    Attack(
        "autoattack",
        "linf",
        _linf("AutoAttack", lambda b: dict(version="standard", n_classes=b.num_classes)),
        "the standard AutoAttack ensemble, square included; slow",
        min_classes=3,
        loss="ensemble",
    )
)


def attack_of(result_name: str) -> Attack:
    """The attack behind a result name, transfer results ("transfer-pgd-linf") included."""
    return ATTACKS.get(result_name.removeprefix(TRANSFER))


def transferable() -> list[str]:
    """The attacks ``--transfer-attack`` may craft on another model: those that read gradients."""
    return [n for n in ATTACKS.names() if not ATTACKS.get(n).gradient_free]


def gradient_free() -> list[str]:
    return [n for n in ATTACKS.names() if ATTACKS.get(n).gradient_free]


def check_attack_request(
    attacks: list[str],
    eps: list[float],
    num_classes: int,
    transfer_attack: str | None = None,
    budget: Budget | None = None,
) -> None:
    """Refuse unknown attacks, eps outside [0, 1], class counts an attack cannot handle, a
    gradient-free transfer attack and budgets below 1."""
    for name in attacks + ([transfer_attack] if transfer_attack else []):
        attack = ATTACKS.get(name)
        if num_classes < attack.min_classes:
            usable = [n for n in ATTACKS.names() if ATTACKS.get(n).min_classes <= num_classes]
            raise HerdError(
                f"attack {name} needs at least {attack.min_classes} classes, this run has "
                f"{num_classes}; use one of {', '.join(usable)}"
            )
    if transfer_attack and ATTACKS.get(transfer_attack).gradient_free:
        raise HerdError(
            f"--transfer-attack {transfer_attack} uses no gradients, so it has nothing to "
            f"transfer; use one of {', '.join(transferable())}"
        )
    bad = [e for e in eps if not 0 <= e <= 1]
    if bad:
        raise HerdError(f"eps {bad} outside [0, 1]: eps is in pixel units of images in [0, 1]")
    if budget is not None and min(budget.steps, budget.restarts, budget.queries) < 1:
        raise HerdError("--steps, --restarts and --queries must be at least 1")
