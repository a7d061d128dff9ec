"""The gradient-masking checks: a model whose gradients are masked is flagged, a plain one
passes."""

import torch
from torch import nn


EPS = [0, 0.05, 0.1, 0.3]


class Quantise(nn.Module):
    """Rounds pixels to 5 grey levels: a step function, so the input gradient is zero everywhere."""

    def forward(self, x):
        return torch.round(x * 4) / 4


def failed(result):
    """The flagged checks as (id, attack) pairs."""
    return {(c["id"], c["attack"]) for c in result["checks"] if c["verdict"] == "flag"}


def test_plain_model_passes_every_check_with_square_and_transfer(toy, attack_toy):
    model, encoder, x, y = toy
    res = attack_toy(
        ["fgsm", "pgd-linf", "apgd-ce", "square"], EPS, queries=200, transfer_from=model
    )
    assert not failed(res)
    ran = {(c["id"], c["attack"]) for c in res["checks"]}
    assert {
        ("gradient-free-not-stronger", "square"),
        ("transfer-not-stronger", "transfer-pgd-linf"),
        ("beats-single-step", "pgd-linf"),
        ("beats-single-step", "apgd-ce"),
    } <= ran
    assert res["unbounded"]["robust_accuracy"] == 0
    assert res["gradients"]["tiny_share"] == 0 and len(res["gradients"]["margin"]) == len(y)
    # Square alone, without gradients, takes a good share of a linear model's images at eps 0.1
    assert res["attacks"]["square"]["0.1"]["robust_accuracy"] <= res["clean"]["accuracy"] - 0.2


def test_quantised_input_masks_gradients_and_is_flagged(toy, attack_toy):
    model, encoder, x, y = toy
    masked = nn.Sequential(Quantise(), model)
    res = attack_toy(
        ["pgd-linf", "apgd-ce", "square"], EPS, queries=200, transfer_from=model, model=masked
    )
    flags = failed(res)
    # gradient attacks stall while Square and the attack crafted on the unmasked model get through
    assert res["attacks"]["apgd-ce"]["0.3"]["robust_accuracy"] > 0.5
    assert res["attacks"]["square"]["0.3"]["robust_accuracy"] < 0.2
    assert {
        ("gradient-free-not-stronger", "square"),
        ("transfer-not-stronger", "transfer-pgd-linf"),
        ("unbounded", "pgd-linf"),
        ("gradients-not-vanishing", None),
        ("large-eps", "apgd-ce"),
    } <= flags, flags
    assert (
        "large-eps",
        "square",
    ) not in flags  # square is no white-box attack: it is not held to that


def test_transfer_from_the_model_itself_equals_white_box(toy, attack_toy):
    model, encoder, x, y = toy
    res = attack_toy(["pgd-linf"], [0.05, 0.1], transfer_from=model)
    for e in ("0.05", "0.1"):
        assert (
            res["attacks"]["transfer-pgd-linf"][e]["correct"]
            == res["attacks"]["pgd-linf"][e]["correct"]
        )


def test_pgd_restarts_never_leave_more_images_correct(toy, attack_toy):
    model, encoder, x, y = toy
    one, five = (
        attack_toy(["pgd-linf"], [0.05], steps=3, restarts=r)["attacks"]["pgd-linf"]["0.05"][
            "correct"
        ]
        for r in (1, 5)
    )
    # the first start is the same; restarts only add fooled images
    assert all(b <= a for a, b in zip(one, five))
