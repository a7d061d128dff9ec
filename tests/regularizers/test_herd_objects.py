"""HeRD's --reg objects (class and universal): their loss for a batch against the autograd Hessians,
the per-image weight on a decoder's loss, and the checks made before training."""

import pytest
import torch
from torch.autograd.functional import hessian

from herd_cls.config import Config
from herd_cls.registry import HerdError
from herd_cls.regularizers import create_regularizer
from toy_heads import regularizer_setup as _setup


def _per_sample_hessians(fn, z):
    return torch.stack(
        [hessian(lambda v: fn(v.unsqueeze(0), i), z[i].detach()) for i in range(len(z))]
    )


def _balanced(H, scale, alpha_off=0.5):
    """The universal penalty by hand: alpha_off x the off-diagonal share of mean |S H S| + the
    diagonal imbalance."""
    hbar = (H * scale.view(1, -1, 1) * scale.view(1, 1, -1)).abs().mean(0)
    diag, root = hbar.diagonal(), hbar.shape[0] ** 0.5
    return alpha_off * (hbar.sum() - diag.sum()) / hbar.sum() + (
        diag.norm() / diag.sum() - 1 / root
    ) / (1 - 1 / root)


def test_class_herd_loss_is_the_purity_penalty_of_the_autograd_hessians():
    reg, model, batch = _setup("class", alpha_reg=2.0)
    penalty, term = reg.loss(model, batch)
    H = _per_sample_hessians(
        lambda v, i: torch.nn.functional.cross_entropy(model.classify(v), batch.y[i : i + 1]),
        batch.z,
    )
    # purity variant: mean over the classes present of the |H| share outside B_c x B_c
    blocks = torch.zeros(3, 6, dtype=torch.bool)
    for c in range(3):
        blocks[c, 2 * c : 2 * c + 2] = True
    impurity = []
    for c in range(3):
        hbar = H[batch.y == c].abs().mean(0)
        impurity.append(1 - hbar[blocks[c]][:, blocks[c]].sum() / hbar.sum())
    assert penalty.item() == pytest.approx(torch.stack(impurity).mean().item(), rel=1e-4)
    assert term.item() == pytest.approx(2.0 * penalty.item(), rel=1e-6)


def test_universal_herd_loss_penalises_off_diagonal_curvature():
    reg, model, batch = _setup("universal")
    penalty, term = reg.loss(model, batch)
    H = _per_sample_hessians(
        lambda v, i: torch.nn.functional.cross_entropy(model.classify(v), batch.y[i : i + 1]),
        batch.z,
    )
    expected = _balanced(H, batch.z.std(0))
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-4)
    assert term.item() == pytest.approx(5.0 * expected.item(), rel=1e-4)  # the default weight


def test_herd_on_a_decoders_loss_weighs_the_penalty_per_image_and_universal_there_is_retired():
    """--wrt both: the penalty's weight divided by the 64 pixels (the per-pixel-mean
    reconstruction's scale); universal HeRD on the reconstruction loss's Hessian is refused in one
    line that names the target to use."""
    for wrt in ("autoencoder", "both"):
        with pytest.raises(
            HerdError, match=f"--reg universal --wrt {wrt} is retired: .* use --wrt decoder-output"
        ):
            Config(reg="universal", decoder=True, wrt=wrt).validate()
    # class HeRD on the classifier's and decoder's Hessian: per image too; on the classifier's
    # alone: as given
    for wrt, pixels in (("both", 64), ("classifier", 1)):
        reg, model, batch = _setup("class", wrt=wrt, recon_loss="mse", alpha_reg=2.0)
        penalty, term = reg.loss(model, batch)
        assert penalty > 0 and term.item() == pytest.approx(2.0 * penalty.item() / pixels, rel=1e-6)


def test_herd_refuses_a_head_with_batch_statistics_before_training():
    reg, model, batch = _setup("class")
    model.classify = torch.nn.Sequential(torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 3))
    with pytest.raises(HerdError, match="classifier head has BatchNorm1d.*use --head block"):
        create_regularizer(reg.cfg, model, 100)
