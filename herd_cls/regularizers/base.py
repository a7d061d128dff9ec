"""What every ``--reg`` is: a small object that says what it needs and gives its loss for a
batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from torch import Tensor

from ..models import LatentModel
from ..options import option, options_from
from ..registry import HerdError, Registry

REGULARIZERS: Registry = Registry("regularizer")
Reduce = Callable[[Tensor], Tensor]


def penalty_ramp(epoch: int, warmup: int = 0, ramp: int = 0) -> float:
    """Fraction of the penalty in force at ``epoch`` (0-based): 0 before warm-up, then a linear
    ramp."""
    if epoch < warmup:
        return 0.0
    return min(1.0, (epoch - warmup + 1) / ramp) if ramp > 0 else 1.0


@dataclass
class Batch:
    """One training batch as a regularizer sees it.

    x: images (B, C, H, W) in [0, 1]; y: labels (B,); z: latents (B, d), a sample of q(z | x) for a
    variational model; mu, logvar: q(z | x)'s mean and log-variance (B, d), or None.
    """

    x: Tensor
    y: Tensor
    z: Tensor
    mu: Tensor | None = None
    logvar: Tensor | None = None

    def head(self, n: int | None) -> "Batch":
        """The first ``n`` samples (all for None)."""
        if n is None or n >= len(self.y):
            return self
        cut = lambda t: None if t is None else t[:n]
        return Batch(self.x[:n], self.y[:n], self.z[:n], cut(self.mu), cut(self.logvar))


@dataclass
class PenaltyOptions:
    """The options every regularizer reads: its weight, when it switches on and on how many
    samples."""

    alpha_reg: float | None = option(
        None,
        "Weight of the regularizer (beta for beta-vae and beta-tcvae, gamma for factor-vae and "
        "beta-vae-capacity); default: the --reg's own, listed with --reg. HeRD on a decoder's "
        "Hessian (--wrt autoencoder or both) is weighted per image: the trainer divides it by the "
        "pixel count.",
        bound="non-negative",
    )
    warmup: int = option(
        1, "Epochs trained without the penalty before it switches on.", bound="non-negative"
    )
    ramp: int = option(
        2,
        "Epochs over which the penalty then ramps linearly to full weight (0: at once).",
        bound="non-negative",
    )
    penalty_samples: int | None = option(
        None,
        "Compute a curvature or Jacobian regularizer (class, universal, hessian-penalty, orojar) "
        "on the first N samples of each batch (default: all, or the --reg's own: 16 for HeRD with "
        "--wrt autoencoder or both); its cost grows with N.",
        bound="positive",
    )


class Regularizer:
    """One ``--reg``. Subclasses set the class attributes, register with
    ``@REGULARIZERS.add`` and implement :meth:`loss`; state kept between batches lives in
    the object (see ``state_dict``).

    Built from the run's config (a :class:`herd_cls.config.Config`; config imports this package for
    its choices, so it is not imported here), the model, the training set's size and ``reduce``,
    which sums batch statistics over processes under torchrun (None in one process).
    ``self.options`` holds the regularizer's own options, the ``Options`` dataclass filled from the
    config.

    Class attributes, asked by config validation and model building:
        Options: the dataclass of the options only this regularizer (or its family) reads, declared
            with :func:`herd_cls.options.option`; the config offers them as CLI options and YAML
            keys.
        default_weight: ``--alpha-reg`` when none is given.
        needs_decoder: the loss reads a decoder.
        variational: the model needs a variational bottleneck (q(z | x) with a log-variance).
        whitened: the model's latent is Concept Whitening's output (``model.whitening``).
        family: what the term shapes; a ``--reg`` list takes at most one regularizer of each family.
    """

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    default_weight: ClassVar[float] = 0.0
    needs_decoder: ClassVar[bool] = False
    variational: ClassVar[bool] = False
    whitened: ClassVar[bool] = False
    family: ClassVar[str] = ""
    Options: ClassVar[type | None] = None

    def __init__(
        self, cfg: Any, model: LatentModel, dataset_size: int, reduce: Reduce | None = None
    ):
        self.cfg, self.dataset_size = cfg, dataset_size
        self.options = options_from(self.Options, cfg) if self.Options is not None else None
        self.weight = cfg.alpha_reg if cfg.alpha_reg is not None else self.default_weight
        self.warmup, self.ramp = cfg.warmup, cfg.ramp
        self.penalty_samples = cfg.penalty_samples

    @classmethod
    def default_penalty_samples(cls, cfg: Any) -> int | None:
        """``--penalty-samples`` when none is given (None: the whole batch)."""
        return None

    @classmethod
    def warnings(cls, cfg: Any) -> list[str]:
        """One line for each reason ``cfg`` will run but is unlikely to do what the user wants."""
        return []

    @classmethod
    def check(cls, cfg: Any) -> None:
        """Raise a HerdError when ``cfg`` cannot run this regularizer."""
        if cls.needs_decoder and not cfg.decoder:
            raise HerdError(f"--reg {cls.name} regularizes a decoder; add --decoder")
        if cls.variational and cfg.latent != "bottleneck":
            raise HerdError(
                f"--reg {cls.name} needs a variational bottleneck; use --latent bottleneck"
            )

    def schedule(self, epoch: int) -> float:
        """Fraction of the term in force at ``epoch`` (0-based): warm-up, then a linear ramp."""
        return penalty_ramp(epoch, self.warmup, self.ramp)

    def start_epoch(self, epoch: int) -> None:
        """Called before every training epoch."""

    def loss(self, model: LatentModel, batch: Batch) -> tuple[Tensor, Tensor]:
        """(penalty to log, term added to the training loss), both scalars; the trainer multiplies
        the term by :meth:`schedule` and computes it in float32."""
        raise NotImplementedError

    def after_step(self, batch: Batch) -> None:
        """Called after every optimiser step of the model (e.g. to train a discriminator)."""

    def to(self, device) -> "Regularizer":
        return self

    def state_dict(self) -> dict:
        """What ``--resume`` needs to continue exactly."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class DecoderPenalty(Regularizer):
    """A penalty ``penalty_fn(decode, z, scale=...)`` of the decoder around each latent of the
    batch's first ``--penalty-samples`` samples, with z measured in its batch std (an encoder's z
    has no unit prior)."""

    needs_decoder = True
    family = "decoder Jacobian or Hessian penalty"
    penalty_fn: ClassVar[Callable[..., Tensor]]

    def loss(self, model, batch):
        batch = batch.head(self.penalty_samples)
        penalty = self.penalty_fn(
            model.decode, batch.z, scale=batch.z.detach().std(0).clamp_min(1e-6)
        )
        return penalty, self.weight * penalty


def decoder_penalty(name: str, help: str, *, default_weight: float):
    """Register the decorated ``fn(decode, z, scale=...) -> penalty`` as the :class:`DecoderPenalty`
    ``--reg name``, and return it unchanged."""

    def register(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        class_name = "".join(word.title() for word in name.split("-"))  # orojar -> Orojar
        entry = dict(
            name=name, help=help, default_weight=default_weight, penalty_fn=staticmethod(fn)
        )
        entry.update(__module__=fn.__module__, __qualname__=class_name)
        REGULARIZERS.add(type(class_name, (DecoderPenalty,), entry))
        return fn

    return register


@REGULARIZERS.add
class NoRegularizer(Regularizer):
    name = "none"
    help = "no regularizer"
    family = "none"

    def schedule(self, epoch: int) -> float:
        return 0.0

    def loss(self, model, batch):
        raise RuntimeError("--reg none has no loss; the trainer never asks for it")
