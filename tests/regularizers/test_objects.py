"""Each --reg object's loss for a batch, against an independent computation of its formula."""

import math

import pytest
import torch
from torch.autograd.functional import hessian
from torch.distributions import Normal, kl_divergence

from herd_cls.config import Config
from herd_cls.registry import HerdError
from herd_cls.regularizers import REGULARIZERS, create_regularizer, regularizer_class
from toy_heads import regularizer_setup


def _setup(reg: str, **overrides):
    return regularizer_setup(reg, **overrides)


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


def _kl(batch):
    q = Normal(batch.mu, torch.exp(0.5 * batch.logvar))
    return kl_divergence(q, Normal(0.0, 1.0)).sum(1).mean()


def test_every_registered_regularizer_says_what_it_is():
    assert {
        "none",
        "class",
        "universal",
        "hessian-penalty",
        "beta-vae",
        "beta-vae-capacity",
        "factor-vae",
        "beta-tcvae",
    } <= set(REGULARIZERS.names())
    for name in REGULARIZERS.names():
        cls = regularizer_class(name)
        assert cls.name == name and cls.help and cls.default_weight >= 0
    with pytest.raises(HerdError, match="unknown regularizer 'ridge'; choose one of: beta-tcvae"):
        regularizer_class("ridge")


def test_requirements_are_checked_from_the_class():
    with pytest.raises(HerdError, match="--reg beta-tcvae regularizes a decoder; add --decoder"):
        Config(reg="beta-tcvae").validate()
    with pytest.raises(HerdError, match="needs a variational bottleneck"):
        Config(reg="beta-vae", decoder=True, latent="pre-logits").validate()
    with pytest.raises(HerdError, match="--wrt autoencoder needs a decoder"):
        Config(reg="class", wrt="autoencoder").validate()


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


def test_hessian_penalty_term_is_weight_times_penalty_and_vanishes_for_a_linear_decoder():
    reg, model, batch = _setup("hessian-penalty")
    penalty, term = reg.loss(model, batch)
    assert penalty > 0 and term.item() == pytest.approx(0.001 * penalty.item())
    model.decode = torch.nn.Linear(6, 64)  # no curvature at all
    assert reg.loss(model, batch)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_beta_vae_and_capacity_terms():
    reg, model, batch = _setup("beta-vae")
    penalty, term = reg.loss(model, batch)
    pixels = 64
    assert penalty.item() == pytest.approx(_kl(batch).item() / pixels, rel=1e-5)
    assert term.item() == pytest.approx(4.0 * _kl(batch).item() / pixels, rel=1e-5)

    reg, model, batch = _setup("beta-vae-capacity", capacity=10.0)
    reg.start_epoch(2)  # capacity anneals linearly to 10 nats over 5 epochs
    assert reg.capacity == pytest.approx(5.0)
    assert reg.loss(model, batch)[1].item() == pytest.approx(
        1000 * abs(_kl(batch).item() - 5.0) / pixels, rel=1e-5
    )


def test_beta_tcvae_term_adds_beta_minus_one_total_correlations():
    reg, model, batch = _setup("beta-tcvae")
    z, mu, logvar = batch.z, batch.mu, batch.logvar
    # TC by minibatch-weighted sampling, written out with torch.distributions
    # (B, B, d)
    log_q = Normal(mu.unsqueeze(0), torch.exp(0.5 * logvar).unsqueeze(0)).log_prob(z.unsqueeze(1))
    norm = math.log(len(z) * 100)
    tc = (
        (torch.logsumexp(log_q.sum(2), 1) - norm) - (torch.logsumexp(log_q, 1) - norm).sum(1)
    ).mean()
    assert reg.loss(model, batch)[1].item() == pytest.approx(
        (_kl(batch) + 5 * tc).item() / 64, rel=1e-4
    )


def test_factor_vae_trains_its_discriminator_and_saves_it():
    reg, model, batch = _setup("factor-vae")
    logits = reg.discriminator(batch.z)
    expected = _kl(batch) + 10 * (logits[:, 0] - logits[:, 1]).mean()
    assert reg.loss(model, batch)[1].item() == pytest.approx(expected.item() / 64, rel=1e-4)
    saved = {k: v.clone() for k, v in reg.discriminator.state_dict().items()}
    state = reg.state_dict()
    state = {
        "discriminator": {k: v.clone() for k, v in state["discriminator"].items()},
        "discriminator_optimizer": state["discriminator_optimizer"],
    }
    reg.after_step(batch)
    moved = reg.discriminator.state_dict()
    assert any(not torch.equal(saved[k], moved[k]) for k in saved)
    reg.load_state_dict(state)
    assert all(torch.equal(saved[k], reg.discriminator.state_dict()[k]) for k in saved)


def test_none_is_never_switched_on_and_the_others_follow_warmup_and_ramp():
    reg, _, _ = _setup("none")
    assert [reg.schedule(e) for e in range(4)] == [0.0] * 4
    reg = create_regularizer(Config(reg="hessian-penalty", decoder=True, warmup=1, ramp=2), None, 1)
    assert [reg.schedule(e) for e in range(4)] == [0.0, 0.5, 1.0, 1.0]


def test_herd_refuses_a_head_with_batch_statistics_before_training():
    reg, model, batch = _setup("class")
    model.classify = torch.nn.Sequential(torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 3))
    with pytest.raises(HerdError, match="classifier head has BatchNorm1d.*use --head block"):
        create_regularizer(reg.cfg, model, 100)
