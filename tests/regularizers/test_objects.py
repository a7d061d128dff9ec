"""Each --reg object's loss for a batch, against an independent computation of its formula."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from herd_cls.config import Config
from herd_cls.registry import HerdError
from herd_cls.regularizers import REGULARIZERS, create_regularizer, regularizer_class
from toy_heads import regularizer_setup


def _setup(reg: str, **overrides):
    return regularizer_setup(reg, **overrides)


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


def test_hessian_penalty_term_is_weight_times_penalty_and_vanishes_for_a_linear_decoder():
    reg, model, batch = _setup("hessian-penalty")
    penalty, term = reg.loss(model, batch)
    assert penalty > 0 and term.item() == pytest.approx(0.001 * penalty.item())
    model.decode = torch.nn.Linear(6, 64)  # no curvature at all
    assert reg.loss(model, batch)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_a_decorated_penalty_function_becomes_a_weighted_decoder_regularizer():
    from herd_cls.regularizers.base import decoder_penalty

    @decoder_penalty("mean-square-decode", "mean squared decoded value", default_weight=3.0)
    def mean_square(decode, z, scale):
        return decode(z / scale).pow(2).mean()

    try:
        reg, model, batch = _setup("mean-square-decode")
        penalty, term = reg.loss(model, batch)
        z = batch.head(reg.penalty_samples).z
        expected = model.decode(z / z.detach().std(0).clamp_min(1e-6)).pow(2).mean()
        assert penalty.item() == pytest.approx(expected.item())
        assert term.item() == pytest.approx(3.0 * expected.item())
        entry = regularizer_class("mean-square-decode")
        assert entry.needs_decoder and entry.penalty_fn is mean_square
    finally:
        REGULARIZERS.unregister("mean-square-decode")


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
    # TC by minibatch-weighted sampling, written out with torch.distributions (B, B, d)
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
