"""How many images block purity is measured on, and one evaluation pass over a split against the
losses computed by hand."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from herd_cls.config import Config
from herd_cls.curvature import AUTO_EXACT_MAX_DIM
from herd_cls.evaluation import (
    EVAL_HESSIAN_SAMPLES,
    VAL_DECODER_HESSIAN_SAMPLES,
    WIDE_HESSIAN_SAMPLES,
    evaluate,
    hessian_samples,
)
from herd_cls.models import create_model


def _model(latent_dim=6, head="block", decoder=False):
    """A tiny conv model on 8x8 grey images, 3 classes of ``latent_dim // 3`` dims each."""
    torch.manual_seed(0)
    return create_model(
        "conv",
        num_classes=3,
        in_chans=1,
        image_size=8,
        latent_dim=latent_dim,
        head=head,
        decoder=decoder,
    )


def test_purity_samples_are_fewer_where_exact_hessians_cost_more():
    narrow, wide = _model(), _model(latent_dim=3 * (AUTO_EXACT_MAX_DIM // 3 + 1), head="mlp")
    on_classifier, on_decoder = Config(), Config(decoder=True, wrt="autoencoder")
    assert [hessian_samples(narrow, on_classifier, split) for split in ("val", "test")] == [
        EVAL_HESSIAN_SAMPLES
    ] * 2
    assert [hessian_samples(narrow, on_decoder, split) for split in ("val", "test")] == [
        VAL_DECODER_HESSIAN_SAMPLES,
        EVAL_HESSIAN_SAMPLES,
    ]
    assert [hessian_samples(wide, on_classifier, split) for split in ("val", "test")] == [
        WIDE_HESSIAN_SAMPLES["val"],
        WIDE_HESSIAN_SAMPLES["test"],
    ]
    # a wide block head's closed form costs no Hessian products: it is measured on as many
    wide_blocks = _model(latent_dim=3 * (AUTO_EXACT_MAX_DIM // 3 + 1))
    assert hessian_samples(wide_blocks, on_classifier, "val") == EVAL_HESSIAN_SAMPLES


@pytest.mark.parametrize("decoder", [False, True])
def test_evaluate_averages_the_losses_and_measures_purity_on_the_first_images(decoder):
    model = _model(decoder=decoder)
    torch.manual_seed(1)
    x, y = torch.rand(10, 1, 8, 8), torch.arange(10) % 3
    cfg = Config(decoder=decoder, recon_loss="mse")
    metrics = evaluate(model, cfg, DataLoader(TensorDataset(x, y), batch_size=4), "cpu", 5)
    assert not model.training
    with torch.no_grad():
        z = model.encode(x)
        logits = model.classify(z)
    ce = F.cross_entropy(logits, y).item()
    assert metrics["ce"] == pytest.approx(ce, rel=1e-5)
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    if decoder:
        recon = F.mse_loss(model.decode(z), x).item()
        assert metrics["recon"] == pytest.approx(recon, rel=1e-5)
        assert metrics["loss"] == pytest.approx(cfg.alpha_cl * ce + cfg.alpha_ae * recon, rel=1e-5)
    else:
        assert metrics["recon"] is None and metrics["loss"] == pytest.approx(ce, rel=1e-5)
    assert metrics["purity_samples"] == 5 and 0 <= metrics["block_purity"] <= 1
