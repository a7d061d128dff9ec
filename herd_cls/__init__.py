"""herd_cls: HeRD, a Hessian regularizer for class-specific disentanglement, for timm classifiers and autoencoders."""
from .data import DATASETS, create_datasets, make_shapes
from .metrics import class_block_purity
from .models import ConvDecoder, ConvEncoder, LatentModel, create_model
from .purity import Purity, measure_purity
from .registry import HerdError
from .regularizer import (HeRD, class_blocks, class_mask, class_penalty, hessian_block_mass, latent_hessian,
                          universal_penalty)
from .regularizers import REGULARIZERS, Regularizer, create_regularizer
from .run import Run, load_run

__version__ = "0.1.0"
