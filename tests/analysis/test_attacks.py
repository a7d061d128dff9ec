"""The attack registry: one entry per attack, its metadata on it; a new entry reaches the report
page."""

import pytest

from herd_cls.analysis.attacks import (
    ATTACKS,
    Attack,
    Budget,
    check_attack_request,
    gradient_free,
    transferable,
)
from herd_cls.analysis.robustness import evaluate_robustness
from herd_cls.registry import HerdError
from herd_cls.layout import BlockLayout
from herd_cls.report.command_pages import write_robustness_page
from html_pages import check_page


def test_bad_attack_requests():
    with pytest.raises(HerdError, match="outside \\[0, 1\\]"):
        check_attack_request(["fgsm"], [-0.1], 10)
    with pytest.raises(HerdError, match="outside \\[0, 1\\]"):
        check_attack_request(["fgsm"], [1.5], 10)
    with pytest.raises(HerdError, match="unknown attack 'cw'; choose one of: apgd-ce"):
        check_attack_request(["cw"], [0.1], 10)
    with pytest.raises(
        HerdError,
        match="apgd-dlr needs at least 3 classes, this run has 2; use one of apgd-ce, "
        "fgsm, pgd-l2, pgd-linf, square$",
    ):
        check_attack_request(["apgd-dlr"], [0.1], 2)
    with pytest.raises(HerdError, match="--transfer-attack square uses no gradients"):
        check_attack_request(["fgsm"], [0.1], 10, transfer_attack="square")
    with pytest.raises(HerdError, match="at least 1"):
        check_attack_request(["fgsm"], [0.1], 10, budget=Budget(restarts=0))


def test_the_registry_holds_the_metadata():
    assert ATTACKS.names() == [
        "apgd-ce",
        "apgd-dlr",
        "autoattack",
        "fgsm",
        "pgd-l2",
        "pgd-linf",
        "square",
    ]
    assert (
        gradient_free() == ["square"]
        and "square" not in transferable()
        and "pgd-linf" in transferable()
    )
    assert ATTACKS.get("pgd-l2").norm == "l2" and ATTACKS.get("apgd-dlr").min_classes == 3
    assert ATTACKS.get("pgd-linf").restarts == "here" and not ATTACKS.get("fgsm").iterative
    assert [n for n in ATTACKS.names() if ATTACKS.get(n).white_box] == [
        "apgd-ce",
        "apgd-dlr",
        "fgsm",
        "pgd-linf",
    ]
    with pytest.raises(ValueError, match="norm must be one of"):
        Attack("bad", "l1", lambda m, eps, b: None, "no such norm")
    with pytest.raises(KeyError, match="registered twice"):
        ATTACKS.add(Attack("fgsm", "linf", lambda m, eps, b: None, "a second fgsm"))


def _shift(model, eps, budget):
    # every pixel brighter by eps: an L-inf step that reads no gradient
    return lambda x, y: (x + eps).clamp(0, 1)


@pytest.fixture
def toy_attack():
    """One registry entry, removed again afterwards (Registry has no public removal)."""
    attack = ATTACKS.add(
        Attack("toy-shift", "linf", _shift, "brightens every pixel by eps", gradient_free=True)
    )
    yield attack
    ATTACKS.unregister(attack.name)
    assert "toy-shift" not in ATTACKS


def test_a_registered_toy_attack_is_evaluated_checked_and_shown(toy, toy_attack, tmp_path):
    model, encoder, x, y = toy
    res = evaluate_robustness(
        model, encoder, x, y, BlockLayout(4, 2), ["fgsm", "toy-shift"], [0, 0.1, 0.3]
    )
    for e in (0.1, 0.3):
        expected = (model((x + e).clamp(0, 1)).argmax(1) == y).float().mean().item()
        assert res["attacks"]["toy-shift"][str(e)]["robust_accuracy"] == pytest.approx(expected)
    assert res["attacks"]["toy-shift"]["0"]["robust_accuracy"] == res["clean"]["accuracy"] == 1.0
    # the shift does move the toy model
    assert res["attacks"]["toy-shift"]["0.3"]["robust_accuracy"] < 1.0
    checks = {(c["id"], c["attack"]): c["verdict"] for c in res["checks"]}
    assert checks["valid-images", "toy-shift"] == "pass"
    assert ("gradient-free-not-stronger", "toy-shift") in checks  # its metadata drives the checks
    assert ("large-eps", "toy-shift") not in checks
    res["settings"] = {
        "n_samples": len(y),
        "steps": 10,
        "restarts": 1,
        "queries": 1000,
        "transfer_from": None,
    }
    page = write_robustness_page(
        ["toy"], [BlockLayout(4, 2)], [res], ["a", "b", "c", "d"], tmp_path
    )
    check_page(page)
    html = page.read_text()
    assert "<td>toy-shift</td><td>0.3</td>" in html  # its results row
    # its entry in the attack list
    assert "brightens every pixel by eps" in html and "gradient-free" in html
