"""herd_cls: HeRD, a Hessian regularizer for class-specific disentanglement, for timm classifiers
and autoencoders."""

from .builtin_data import make_shapes
from .data import DATASETS, create_datasets
from .curvature import latent_hessian
from .derivatives import hessian_block_mass
from .layout import BlockLayout
from .backbones import ConvDecoder, ConvEncoder
from .models import LatentModel, create_model
from .purity import Purity, class_block_purity, measure_purity
from .registry import HerdError
from .regularizers import REGULARIZERS, Regularizer, create_regularizer
from .regularizers.herd import HeRD
from .regularizers.herd_forms import CLASS_VARIANTS, UNIVERSAL_FORMS, class_mask, universal_penalty
from .regularizers.herd_penalty import class_penalty
from .run import Run, load_run

__version__ = "0.1.0"
__all__ = [
    "DATASETS",
    "create_datasets",
    "make_shapes",
    "hessian_block_mass",
    "latent_hessian",
    "BlockLayout",
    "ConvDecoder",
    "ConvEncoder",
    "LatentModel",
    "create_model",
    "Purity",
    "class_block_purity",
    "measure_purity",
    "HerdError",
    "REGULARIZERS",
    "Regularizer",
    "create_regularizer",
    "HeRD",
    "CLASS_VARIANTS",
    "UNIVERSAL_FORMS",
    "class_mask",
    "class_penalty",
    "universal_penalty",
    "Run",
    "load_run",
]
