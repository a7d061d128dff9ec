"""The ``--reg`` choices: one small class per regularizer, registered once in ``REGULARIZERS``.

Adding one is a file here (a ``Regularizer`` subclass with ``@REGULARIZERS.add``), its
import below, and its test; config, CLI, model building and the trainer ask the object.
"""

from .base import REGULARIZERS, Batch, PenaltyOptions, Regularizer

# imported to register their --reg entries
from . import concept_whitening, herd_objects, hessian_penalty, orojar, vae  # noqa: F401
from .compose import create_regularizer, reg_names, regularizer_class, resolved_reg
from .vae import FactorDiscriminator, gaussian_kl, permute_dims, reparameterise, total_correlation

__all__ = [
    "REGULARIZERS",
    "Batch",
    "PenaltyOptions",
    "Regularizer",
    "create_regularizer",
    "regularizer_class",
    "reg_names",
    "resolved_reg",
    "FactorDiscriminator",
    "gaussian_kl",
    "permute_dims",
    "reparameterise",
    "total_correlation",
]
