"""--reg lists (regularizers/compose.py) and HeRD on the decoder's own curvature (--wrt
decoder-output)."""

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from herd_cls.config import Config, load_config
from herd_cls.registry import HerdError
from herd_cls.regularizers import regularizer_class, resolved_reg
from herd_cls.regularizers.herd_penalty import image_penalty
from toy_heads import regularizer_setup


def _setup(reg: str, **overrides):
    # a small smooth decoder, so that the oracle's per-pixel Hessians take seconds, not minutes
    torch.manual_seed(0)
    decoder = nn.Sequential(
        nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 64), nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8))
    )
    return regularizer_setup(reg, decoder, torch.double, **overrides)


def _oracle_shares(model, z: torch.Tensor, own: torch.Tensor | None) -> torch.Tensor:
    """Each image's share of sum_u ||H_u||^2 of the decoded image's pixels, z in its batch std, from
    per-sample torch.autograd.functional.jacobian of the Jacobian (every pixel's Hessian at once;
    tests/test_decoder_curvature.py checks the same shares pixel by pixel with
    autograd.functional.hessian)."""
    s = z.detach().std(0)
    shares = []
    for i in range(len(z)):
        pixels = lambda v: model.decode((v * s).unsqueeze(0)).flatten()
        # (64, d, d)
        H = jacobian(lambda v: jacobian(pixels, v, create_graph=True), z[i].detach() / s)
        sq = H.pow(2)
        part = (
            sq[:, own[i]][:, :, own[i]].sum()
            if own is not None
            else sq.sum() - torch.diagonal(sq, dim1=1, dim2=2).sum()
        )
        shares.append(part / sq.sum())
    return torch.stack(shares)


def test_universal_herd_on_the_decoder_output_is_the_mean_off_diagonal_share_of_the_oracle():
    reg, model, batch = _setup(
        "universal", wrt="decoder-output", hessian_method="exact", alpha_reg=3.0
    )
    penalty, term = reg.loss(model, batch)
    expected = _oracle_shares(model, batch.z, None).mean()
    assert torch.allclose(penalty, expected, atol=1e-8)
    # weighted per image: divided by the pixels
    assert torch.allclose(term, 3.0 * expected / 64, atol=1e-8)


def test_class_herd_on_the_decoder_output_penalises_each_images_own_block_share():
    reg, model, batch = _setup("class", wrt="decoder-output", hessian_method="exact")
    penalty, _ = reg.loss(model, batch)
    own = model.layout.own(batch.y)
    expected = image_penalty(_oracle_shares(model, batch.z, own), batch.y, 3)
    assert torch.allclose(penalty, expected, atol=1e-8)


def test_a_list_is_the_sum_of_its_parts_each_at_its_own_weight():
    both, model, batch = _setup(
        "beta-tcvae:2,universal:3", wrt="decoder-output", hessian_method="exact"
    )
    parts = [
        _setup(name, alpha_reg=w, wrt="decoder-output", hessian_method="exact")[0]
        for name, w in (("beta-tcvae", 2.0), ("universal", 3.0))
    ]
    both.start_epoch(0)
    penalty, term = both.loss(model, batch)
    expected = [p.loss(model, batch) for p in parts]
    assert torch.allclose(penalty, expected[0][0] + expected[1][0])
    assert torch.allclose(term, expected[0][1] + expected[1][1])
    assert (
        regularizer_class("beta-tcvae,universal").variational
        and regularizer_class("beta-tcvae,universal").needs_decoder
    )


def test_each_part_keeps_its_own_ramp():
    reg, model, batch = _setup(
        "beta-tcvae,universal",
        wrt="decoder-output",
    )
    reg.members[1].warmup = 2  # universal starts two epochs later
    reg.start_epoch(0)
    assert reg.schedule(0) == 1.0 and reg.ramps == [1.0, 0.0]
    _, term = reg.loss(model, batch)
    assert torch.allclose(term, reg.members[0].loss(model, batch)[1])


def test_the_resolved_list_names_every_weight():
    assert resolved_reg("beta-tcvae,universal:2.5") == "beta-tcvae:6,universal:2.5"
    assert resolved_reg("class") == "class"
    assert (
        load_config(overrides={"reg": "beta-tcvae,universal", "decoder": True}).reg_weight is None
    )


@pytest.mark.parametrize(
    "reg, message",
    [
        (
            "beta-vae,beta-tcvae",
            "beta-vae and beta-tcvae are both VAE .* regularizers; combine at most one of each "
            "family",
        ),
        ("class,universal", "class and universal are both HeRD regularizers"),
        ("hessian-penalty,orojar", "both decoder Jacobian or Hessian penalty regularizers"),
        ("none,class", "'none' cannot be combined"),
        (
            "beta-tcvae:x,universal",
            "the weight of beta-tcvae must be a number .name:weight., got 'x'",
        ),
        ("beta-tcvae:-1,universal", "must not be negative"),
        ("beta-tcvae,ridge", "unknown regularizer 'ridge'; choose one of: "),
    ],
)
def test_bad_lists_are_refused_in_one_line(reg, message):
    with pytest.raises(HerdError, match=message):
        Config(reg=reg, decoder=True).validate()


def test_alpha_reg_with_a_list_is_refused():
    with pytest.raises(
        HerdError,
        match="--alpha-reg weighs a single regularizer; with --reg beta-tcvae,universal give",
    ):
        Config(reg="beta-tcvae,universal", decoder=True, alpha_reg=2.0).validate()


def test_each_part_is_checked_like_a_single_reg():
    with pytest.raises(HerdError, match="--reg beta-tcvae regularizes a decoder; add --decoder"):
        Config(reg="beta-tcvae,class").validate()
    with pytest.raises(HerdError, match="--wrt decoder-output computes its curvature exactly"):
        Config(reg="universal", decoder=True, wrt="decoder-output", hessian_method="hvp").validate()
    with pytest.raises(HerdError, match="use --variant image-purity"):
        Config(reg="class", decoder=True, wrt="decoder-output", variant="purity").validate()
