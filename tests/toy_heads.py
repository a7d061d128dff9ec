"""Toy heads and the independent Hessian oracle shared by the curvature and penalty tests."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import hessian

from herd_cls.losses import per_sample_loss
from herd_cls.layout import BlockLayout
from herd_cls.heads import BlockHead


@pytest.fixture(autouse=True)
def float64():
    """Oracle comparisons in double precision, restored afterwards for the other test modules."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def oracle(head, z, target, loss):
    """Independent reference: torch.autograd.functional.hessian, one sample at a time, of the loss
    as torch computes it (F.cross_entropy for "ce", not the library's rewriting)."""
    fn = (
        (lambda out, y: F.cross_entropy(out, y, reduction="none"))
        if loss == "ce"
        else per_sample_loss(loss)
    )
    return torch.stack(
        [
            hessian(lambda zi: fn(head(zi[None]), target[i : i + 1]).sum(), z[i])
            for i in range(len(z))
        ]
    )


def mlp(d, k, act=nn.Tanh):
    return nn.Sequential(nn.Linear(d, 7), act(), nn.Linear(7, k))


def decoder(d, out_act):
    return nn.Sequential(
        nn.Linear(d, 9), nn.Softplus(), nn.Linear(9, 12), out_act, nn.Unflatten(1, (3, 4))
    )


CASES = {
    "linear-ce": lambda: (nn.Linear(5, 4), torch.randint(0, 4, (6,)), "ce"),
    "mlp-ce": lambda: (mlp(5, 4), torch.randint(0, 4, (6,)), "ce"),
    "block-head-ce": lambda: (
        BlockHead(BlockLayout(2, 2, shared_dims=1), hidden=6),
        torch.randint(0, 2, (6,)),
        "ce",
    ),
    "sigmoid-mse": lambda: (decoder(5, nn.Sigmoid()), torch.rand(6, 3, 4), "mse"),
    "sigmoid-bce": lambda: (decoder(5, nn.Sigmoid()), torch.rand(6, 3, 4), "bce"),
}


def regularizer_setup(reg: str, decoder=None, dtype=torch.float32, **overrides):
    """(regularizer, model, batch) for ``--reg reg`` on a tiny conv autoencoder (3 classes, 6 latent
    dims) and a batch of 5 random 8x8 images; ``decoder`` replaces the model's decoder, ``dtype``
    sets the precision."""
    from herd_cls.config import Config
    from herd_cls.models import create_model
    from herd_cls.regularizers import Batch, create_regularizer, regularizer_class

    torch.manual_seed(0)
    cfg = Config(
        reg=reg,
        decoder=True,
        latent_dim=6,
        num_classes=3,
        head="mlp",
        warmup=0,
        ramp=0,
        epochs=5,
        **overrides,
    ).validate()
    model = create_model(
        "conv",
        num_classes=3,
        in_chans=1,
        image_size=8,
        latent_dim=6,
        head="mlp",
        decoder=True,
        variational=regularizer_class(reg).variational,
    )
    if decoder is not None:
        model.decode = decoder
    model = model.to(dtype).eval()
    x, y = torch.rand(5, 1, 8, 8, dtype=dtype), torch.tensor([0, 1, 2, 0, 1])
    if model.variational:
        mu, logvar = model.encode_distribution(x)
        batch = Batch(x, y, mu + 0.1, mu, logvar)
    else:
        batch = Batch(x, y, model.encode(x))
    return create_regularizer(cfg, model, dataset_size=100), model, batch
