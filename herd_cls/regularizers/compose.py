"""``--reg`` as a list: ``beta-tcvae,universal`` or, each with its own weight,
``beta-tcvae:6,universal:5``.

A list is one :class:`Composite` regularizer whose term is the sum of its parts' terms, each part
with its own weight (its default where none is given) and its own warm-up. It takes at most one
regularizer of each family (two KL terms on q(z | x), or two HeRD penalties on one latent, would
fight over the same thing).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any, ClassVar

from ..registry import HerdError
from .base import REGULARIZERS, Batch, Reduce, Regularizer


def parse_reg(spec: str) -> tuple[tuple[str, float | None], ...]:
    """``"a:1.5,b"`` -> (("a", 1.5), ("b", None)); every problem is one HerdError naming the fix."""
    parts = []
    for item in spec.split(","):
        name, _, weight = item.strip().partition(":")
        REGULARIZERS.get(name)  # an unknown name lists the valid ones
        if not weight:
            parts.append((name, None))
            continue
        try:
            value = float(weight)
        except ValueError:
            raise HerdError(
                f"--reg {spec}: the weight of {name} must be a number (name:weight), got {weight!r}"
            ) from None
        if not value >= 0:
            raise HerdError(
                f"--reg {spec}: the weight of {name} must not be negative, got {weight}"
            )
        parts.append((name, value))
    return tuple(parts)


class Composite(Regularizer):
    """Several regularizers at once: the sum of their terms (see the module docstring)."""

    parts: ClassVar[tuple[tuple[str, float | None], ...]] = ()

    def __init__(self, cfg: Any, model, dataset_size: int, reduce: Reduce | None = None):
        super().__init__(replace(cfg, alpha_reg=0.0), model, dataset_size, reduce)
        self.members = [
            REGULARIZERS.get(name)(_part_config(cfg, name, w), model, dataset_size, reduce)
            for name, w in self.parts
        ]
        self.ramps = [0.0] * len(self.members)

    @classmethod
    def check(cls, cfg: Any) -> None:
        families: dict[str, str] = {}
        for name, _ in cls.parts:
            family = REGULARIZERS.get(name).family
            if family == "none":
                raise HerdError(f"--reg {cfg.reg}: 'none' cannot be combined; leave it out")
            if family in families:
                raise HerdError(
                    f"--reg {cfg.reg}: {families[family]} and {name} are both {family} "
                    "regularizers; combine at most one of each family"
                )
            families[family] = name
        if cfg.alpha_reg is not None:
            raise HerdError(
                f"--alpha-reg weighs a single regularizer; with --reg {cfg.reg} give each its "
                "weight as name:weight"
            )
        for name, weight in cls.parts:
            REGULARIZERS.get(name).check(_part_config(cfg, name, weight))

    @classmethod
    def warnings(cls, cfg: Any) -> list[str]:
        return [
            w
            for name, weight in cls.parts
            for w in REGULARIZERS.get(name).warnings(_part_config(cfg, name, weight))
        ]

    def schedule(self, epoch: int) -> float:
        return max(m.schedule(epoch) for m in self.members)

    def start_epoch(self, epoch: int) -> None:
        self.ramps = [m.schedule(epoch) for m in self.members]
        for m in self.members:
            m.start_epoch(epoch)

    def loss(self, model, batch: Batch):
        """The sum of the parts' penalties, and of their terms, each at its own ramp (relative to
        :meth:`schedule`, which the trainer multiplies by)."""
        top = max(self.ramps)
        penalty = term = 0.0
        for member, ramp in zip(self.members, self.ramps):
            if ramp > 0:
                p, t = member.loss(model, batch)
                penalty, term = penalty + p, term + (ramp / top) * t
        return penalty, term

    def after_step(self, batch: Batch) -> None:
        for m in self.members:
            m.after_step(batch)

    def to(self, device) -> "Composite":
        for m in self.members:
            m.to(device)
        return self

    def state_dict(self) -> dict:
        return {str(i): m.state_dict() for i, m in enumerate(self.members)}

    def load_state_dict(self, state: dict) -> None:
        for i, m in enumerate(self.members):
            m.load_state_dict(state.get(str(i), {}))


def _part_config(cfg: Any, name: str, weight: float | None) -> Any:
    return replace(
        cfg,
        reg=name,
        alpha_reg=weight if weight is not None else REGULARIZERS.get(name).default_weight,
    )


@lru_cache(maxsize=None)
def _composite(spec: str) -> type[Composite]:
    parts = parse_reg(spec)
    members = [REGULARIZERS.get(name) for name, _ in parts]
    return type(
        "Composite",
        (Composite,),
        {
            "name": spec,
            "help": " + ".join(m.help for m in members),
            "parts": parts,
            "family": "composite",
            "needs_decoder": any(m.needs_decoder for m in members),
            "variational": any(m.variational for m in members),
            "whitened": any(m.whitened for m in members),
        },
    )


def regularizer_class(spec: str) -> type[Regularizer]:
    """The class of ``--reg spec``: a registered name, or a :class:`Composite` of a list; an unknown
    name lists the valid ones."""
    if "," in spec or ":" in spec:
        return _composite(spec.replace(" ", ""))
    return REGULARIZERS.get(spec)


def resolved_reg(spec: str) -> str:
    """``spec`` with every weight written out (defaults filled in), as the run's config saves it."""
    if "," not in spec and ":" not in spec:
        return spec
    return ",".join(
        f"{name}:{w if w is not None else REGULARIZERS.get(name).default_weight:g}"
        for name, w in parse_reg(spec)
    )


def reg_names(spec: str) -> list[str]:
    """The registered names in ``spec``."""
    return [name for name, _ in parse_reg(spec)]


def create_regularizer(
    cfg: Any, model, dataset_size: int, reduce: Reduce | None = None
) -> Regularizer:
    """The regularizer ``cfg.reg`` names, built for ``model`` trained on ``dataset_size`` images;
    ``reduce`` sums batch statistics over processes (see :class:`Regularizer`)."""
    return regularizer_class(cfg.reg)(cfg, model, dataset_size, reduce)
