"""The gradient-masking checks: a model whose gradients are masked is flagged, a plain one passes."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from herd_cls.analysis.robustness import evaluate_robustness, sanity_checks
from herd_cls.analysis.runs import check_transfer_source
from herd_cls.data import DataInfo
from herd_cls.registry import HerdError
from herd_cls.layout import BlockLayout

EPS = [0, 0.05, 0.1, 0.3]


class Quantise(nn.Module):
    """Rounds pixels to 5 grey levels: a step function, so the input gradient is zero everywhere."""

    def forward(self, x):
        return torch.round(x * 4) / 4




def failed(result):
    return {c["check"] for c in result["checks"] if not c["passed"]}


def test_plain_model_passes_every_check_with_square_and_transfer(toy):
    model, encoder, x, y = toy
    res = evaluate_robustness(model, encoder, x, y, BlockLayout.split(4, 8).masks, ["fgsm", "pgd-linf", "apgd-ce", "square"], EPS,
                              queries=200, transfer_from=model)
    assert not failed(res)
    names = {c["check"] for c in res["checks"]}
    assert any("square: gradient-free is not stronger" in n for n in names)
    assert any("transfer-pgd-linf: a transfer attack is not stronger" in n for n in names)
    assert res["unbounded"]["robust_accuracy"] == 0
    assert res["gradients"]["tiny_share"] == 0 and len(res["gradients"]["margin"]) == len(y)
    # Square alone, without gradients, takes a good share of a linear model's images at eps 0.1
    assert res["attacks"]["square"]["0.1"]["robust_accuracy"] <= res["clean"]["accuracy"] - 0.2


def test_quantised_input_masks_gradients_and_is_flagged(toy):
    model, encoder, x, y = toy
    masked = nn.Sequential(Quantise(), model)
    res = evaluate_robustness(masked, encoder, x, y, BlockLayout.split(4, 8).masks, ["pgd-linf", "apgd-ce", "square"], EPS,
                              queries=200, transfer_from=model)
    flags = failed(res)
    # gradient attacks stall while Square and the attack crafted on the unmasked model get through
    assert res["attacks"]["apgd-ce"]["0.3"]["robust_accuracy"] > 0.5
    assert res["attacks"]["square"]["0.3"]["robust_accuracy"] < 0.2
    for expected in ["square: gradient-free is not stronger than the white-box attacks (else gradients are masked)",
                     "transfer-pgd-linf: a transfer attack is not stronger than the white-box attacks (else "
                     "gradients are masked)",
                     "unbounded pgd-linf (eps 1) leaves no image correct",
                     "input gradients are not vanishing, clean or attacked (a flat model masks them)",
                     "apgd-ce: large eps drives accuracy to about 0"]:
        assert expected in flags, flags


def test_transfer_from_the_model_itself_equals_white_box(toy):
    model, encoder, x, y = toy
    res = evaluate_robustness(model, encoder, x, y, BlockLayout.split(4, 8).masks, ["pgd-linf"], [0.05, 0.1], transfer_from=model)
    for e in ("0.05", "0.1"):
        assert res["attacks"]["transfer-pgd-linf"][e]["correct"] == res["attacks"]["pgd-linf"][e]["correct"]


def test_pgd_restarts_never_leave_more_images_correct(toy):
    model, encoder, x, y = toy
    one, five = (evaluate_robustness(model, encoder, x, y, BlockLayout.split(4, 8).masks, ["pgd-linf"], [0.05], steps=3,
                                     restarts=r)["attacks"]["pgd-linf"]["0.05"]["correct"] for r in (1, 5))
    assert all(b <= a for a, b in zip(one, five))  # the first start is the same; restarts only add fooled images


def synthetic(accs: dict, clean: float = 0.9) -> dict:
    """A result with only robust accuracies: {attack: {eps: accuracy}}."""
    return {"clean": {"accuracy": clean},
            "attacks": {a: {e: {"robust_accuracy": v} for e, v in table.items()} for a, table in accs.items()}}


def by_name(checks):
    return {c["check"]: c["passed"] for c in checks}


def test_monotonicity_and_large_eps_on_synthetic_numbers():
    # the issue's pattern: more images correct at eps 0.3 than at 0.1
    checks = by_name(sanity_checks(synthetic({"apgd-ce": {"0": 0.9, "0.1": 0.01, "0.3": 0.02},
                                              "pgd-linf": {"0": 0.9, "0.1": 0.3, "0.3": 0.3}})))
    assert checks["apgd-ce: accuracy falls as eps grows"] is False
    assert checks["pgd-linf: accuracy falls as eps grows"] is True  # flat is allowed
    assert checks["apgd-ce: large eps drives accuracy to about 0"] is True
    assert checks["pgd-linf: large eps drives accuracy to about 0"] is False
    assert checks["apgd-ce: eps = 0 reproduces clean accuracy"] is True


def test_square_stronger_than_white_box_is_flagged_beyond_tolerance():
    square = "square: gradient-free is not stronger than the white-box attacks (else gradients are masked)"
    ok = by_name(sanity_checks(synthetic({"pgd-linf": {"0.1": 0.40}, "square": {"0.1": 0.395}})))
    assert ok[square] is True  # within the 0.01 tolerance
    bad = by_name(sanity_checks(synthetic({"pgd-linf": {"0.1": 0.40, "0.3": 0.2}, "square": {"0.1": 0.45, "0.3": 0.1}})))
    assert bad[square] is False  # weaker at 0.1, but stronger at 0.3


def fake_run(name, classes, size, chans=1):
    return SimpleNamespace(path=Path(name), info=DataInfo(len(classes), classes, chans, size))


def test_transfer_source_must_match_classes_and_image_shape():
    target = fake_run("target", ["a", "b"], 16)
    check_transfer_source(target, fake_run("same", ["a", "b"], 16))
    with pytest.raises(HerdError, match="--transfer-from other has classes \\['a', 'c'\\]"):
        check_transfer_source(target, fake_run("other", ["a", "c"], 16))
    with pytest.raises(HerdError, match="takes 1x32x32 images, this run 1x16x16"):
        check_transfer_source(target, fake_run("big", ["a", "b"], 32))
