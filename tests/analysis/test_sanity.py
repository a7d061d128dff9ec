"""The gradient-masking checks on synthetic numbers: each flags what it should, by id."""

from herd_cls.analysis.sanity import Tolerances, masking_signs, sanity_checks


def synthetic(accs: dict, clean: float = 0.9) -> dict:
    """A result with only robust accuracies: {attack: {eps: accuracy}}."""
    return {
        "clean": {"accuracy": clean},
        "attacks": {
            a: {e: {"robust_accuracy": v} for e, v in table.items()} for a, table in accs.items()
        },
    }


def verdicts(checks):
    """{(id, attack): verdict}."""
    return {(c["id"], c["attack"]): c["verdict"] for c in checks}


def test_every_check_carries_an_id_a_verdict_and_the_human_message():
    checks = sanity_checks(synthetic({"apgd-ce": {"0": 0.9, "0.1": 0.01, "0.3": 0.02}}))
    for c in checks:
        assert set(c) == {"id", "attack", "verdict", "passed", "check", "detail"}
        assert c["verdict"] == ("pass" if c["passed"] else "flag")
    falls = next(c for c in checks if c["id"] == "falls-with-eps")
    assert (
        falls["check"] == "apgd-ce: accuracy falls as eps grows"
        and falls["detail"] == "0.900 → 0.010 → 0.020"
    )


def test_monotonicity_and_large_eps_on_synthetic_numbers():
    # the issue's pattern: more images correct at eps 0.3 than at 0.1
    v = verdicts(
        sanity_checks(
            synthetic(
                {
                    "apgd-ce": {"0": 0.9, "0.1": 0.01, "0.3": 0.02},
                    "pgd-linf": {"0": 0.9, "0.1": 0.3, "0.3": 0.3},
                }
            )
        )
    )
    assert v["falls-with-eps", "apgd-ce"] == "flag"
    assert v["falls-with-eps", "pgd-linf"] == "pass"  # flat is allowed
    assert v["large-eps", "apgd-ce"] == "pass"
    assert v["large-eps", "pgd-linf"] == "flag"
    assert v["eps-zero-is-clean", "apgd-ce"] == "pass"
    assert v["not-above-clean", "pgd-linf"] == "pass"


def test_large_eps_holds_only_white_box_linf_attacks():
    v = verdicts(
        sanity_checks(
            synthetic({"pgd-l2": {"0.3": 0.8}, "square": {"0.3": 0.8}, "fgsm": {"0.3": 0.8}})
        )
    )
    assert ("large-eps", "pgd-l2") not in v and ("large-eps", "square") not in v
    assert v["large-eps", "fgsm"] == "flag"


def test_square_stronger_than_white_box_is_flagged_beyond_tolerance():
    ok = verdicts(sanity_checks(synthetic({"pgd-linf": {"0.1": 0.40}, "square": {"0.1": 0.395}})))
    assert ok["gradient-free-not-stronger", "square"] == "pass"  # within the 0.01 tolerance
    bad = verdicts(
        sanity_checks(
            synthetic({"pgd-linf": {"0.1": 0.40, "0.3": 0.2}, "square": {"0.1": 0.45, "0.3": 0.1}})
        )
    )
    # weaker at 0.1, but stronger at 0.3
    assert bad["gradient-free-not-stronger", "square"] == "flag"
    strict = verdicts(
        sanity_checks(
            synthetic({"pgd-linf": {"0.1": 0.40}, "square": {"0.1": 0.395}}),
            Tolerances(transfer=0.001),
        )
    )
    assert strict["gradient-free-not-stronger", "square"] == "flag"


def test_transfer_and_iterative_against_single_step():
    v = verdicts(
        sanity_checks(
            synthetic(
                {
                    "fgsm": {"0.1": 0.30},
                    "pgd-linf": {"0.1": 0.35},
                    "apgd-ce": {"0.1": 0.31},
                    "apgd-dlr": {"0.1": 0.5},
                    "transfer-pgd-linf": {"0.1": 0.2},
                }
            )
        )
    )
    assert v["beats-single-step", "pgd-linf"] == "flag"  # 5 points worse than one step
    assert v["beats-single-step", "apgd-ce"] == "pass"  # within 2 points
    assert ("beats-single-step", "apgd-dlr") not in v  # another loss than fgsm's
    assert v["transfer-not-stronger", "transfer-pgd-linf"] == "flag"
    assert ("large-eps", "transfer-pgd-linf") not in v  # a transfer attack is no white-box one


def test_model_checks_and_attacks_no_longer_registered():
    result = synthetic({"gone": {"0": 0.9, "0.1": 0.95}})
    result["unbounded"] = {"attack": "pgd-linf", "eps": 1.0, "robust_accuracy": 0.5}
    result["gradients"] = {
        "tiny": 1e-6,
        "tiny_share": 0.0,
        "zero_share": 0.1,
        "nonfinite_share": 0.0,
    }
    v = verdicts(sanity_checks(result))
    assert v["falls-with-eps", "gone"] == "flag" and v["not-above-clean", "gone"] == "flag"
    assert v["unbounded", "pgd-linf"] == "flag"
    assert v["gradients-not-vanishing", None] == "pass" and v["gradients-finite", None] == "flag"


def test_masking_signs_name_the_flags_that_point_at_masking_and_not_a_single_step_overshoot():
    rising = {"0": 0.9, "0.1": 0.01, "0.3": 0.02}  # accuracy rises from eps 0.1 to 0.3
    assert masking_signs(sanity_checks(synthetic({"fgsm": rising}))) == []
    signs = masking_signs(
        sanity_checks(synthetic({"apgd-ce": rising, "square": {"0.1": 0.0, "0.3": 0.0}}))
    )
    assert signs == ["Square beats the white-box attacks", "accuracy rises with eps"]
    # a flag that is not a masking sign (a white-box attack too weak at eps 0.3) names none
    weak = sanity_checks(synthetic({"pgd-linf": {"0": 0.9, "0.1": 0.5, "0.3": 0.5}}))
    assert any(c["verdict"] == "flag" for c in weak) and masking_signs(weak) == []
