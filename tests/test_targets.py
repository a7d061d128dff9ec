"""The --wrt targets: each reads the Hessian of the loss it names (against the per-sample autograd
oracle), and what each needs and allows is on its entry."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from herd_cls.config import Config
from herd_cls.curvature import latent_hessian
from herd_cls.registry import HerdError
from herd_cls.targets import TARGETS

# float64 is an autouse fixture
from toy_heads import decoder, float64, mlp, oracle  # noqa: F401


def _model():
    torch.manual_seed(0)
    return SimpleNamespace(classify=mlp(5, 4), decode=decoder(5, nn.Sigmoid()))


@pytest.mark.parametrize("name", TARGETS.names())
def test_each_target_reads_the_hessian_of_the_loss_it_names(name):
    model = _model()
    z, y, x = torch.randn(6, 5), torch.randint(0, 4, (6,)), torch.rand(6, 3, 4)
    head, target, loss = TARGETS.get(name).loss_hessian(model, "mse", x, y)
    classifier = oracle(model.classify, z, y, "ce")
    reconstruction = oracle(model.decode, z, x, "mse")
    expected = {
        "classifier": classifier,
        "autoencoder": reconstruction,
        "both": classifier + reconstruction,
        # the decoder's own curvature is no loss's: purity reads the classifier's
        "decoder-output": classifier,
    }[name]
    torch.testing.assert_close(latent_hessian(head, z, target, loss, "exact"), expected)


def test_what_each_target_needs_is_on_its_entry():
    assert [n for n in TARGETS.names(sort=False) if TARGETS.get(n).decoder] == [
        "autoencoder",
        "both",
        "decoder-output",
    ]
    with pytest.raises(HerdError, match="--wrt autoencoder needs a decoder; add --decoder"):
        Config(reg="class", wrt="autoencoder").validate()
    with pytest.raises(HerdError, match="--reg universal --wrt both is retired"):
        Config(reg="universal", decoder=True, wrt="both").validate()
    Config(reg="universal", decoder=True, wrt="decoder-output").validate()
    with pytest.raises(
        HerdError, match="--wrt must be one of classifier, autoencoder, both, decoder"
    ):
        Config(reg="class", wrt="decoder").validate()


def test_the_head_warning_stands_wherever_purity_reads_the_classifier():
    """--head mlp keeps class purity low wherever purity is the classifier's curvature: every target
    but the reconstruction loss alone."""
    from herd_cls.regularizers import regularizer_class

    def warned(wrt):
        cfg = Config(reg="class", head="mlp", decoder=True, wrt=wrt)
        return any("keeps purity low" in w for w in regularizer_class("class").warnings(cfg))

    assert {n: warned(n) for n in TARGETS.names()} == {
        "autoencoder": False,
        "both": True,
        "classifier": True,
        "decoder-output": True,
    }
