"""herd_cls.benchmarking.robustness_protocol: which attacks each pass runs, the worst of all attacks
per image, and the sanity checks read back from saved records, old ones included."""

import pytest

from herd_cls.benchmarking import robustness_protocol as protocol


def result(attacks: dict[str, dict[str, list[int]]]) -> dict:
    """A robustness result whose attacks leave these images correct ({name: {eps: 0/1 list}})."""
    tables = {
        name: {
            e: {"correct": c, "confusion": [[1]], "robust_accuracy": sum(c) / len(c)}
            for e, c in table.items()
        }
        for name, table in attacks.items()
    }
    return {"attacks": tables, "gradients": {"ce": [1.0], "margin": [2.0], "tiny_share": 0.0}}


def test_worst_of_all_keeps_an_image_only_where_every_attack_of_every_pass_left_it_correct():
    default = result(
        {"fgsm": {"0.0": [1, 1, 1, 1], "0.1": [1, 0, 1, 1]}, "square": {"0.1": [1, 1, 0, 1]}}
    )
    strong = result({"pgd-linf": {"0.1": [0, 1, 1, 1]}})  # no eps 0: not in the strong pass
    worst = protocol.worst_of_all([default, strong], [0.0, 0.1])
    assert worst == {"0.0": 1.0, "0.1": 0.25}  # at 0.1 only the last image survives all three


def test_attacked_runs_the_default_pass_with_transfer_then_the_strong_pass_above_eps_0(
    monkeypatch,
):
    calls = []

    def attack_run(run, attacks, eps, steps, restarts, n, queries=1000, source=None, via=None):
        calls.append((attacks, eps, steps, restarts, n, queries, source, via))
        return result({a: {str(e): [1, 0] for e in eps} for a in attacks})

    monkeypatch.setattr(protocol, "attack_run", attack_run)
    how_hard = protocol.Protocol(n_samples=20, strong_steps=7)
    out = protocol.attacked("run", "source", [0, 0.1], how_hard)
    assert calls == [
        (protocol.ATTACKS, [0, 0.1], 10, 1, 20, 1000, "source", "pgd-linf"),
        (protocol.STRONG, [0.1], 7, 3, 20, 1000, None, None),
    ]
    assert out["worst_of_all"] == {"0": 0.5, "0.1": 0.5}
    row = out["strong"]["attacks"]["apgd-ce"]["0.1"]  # compact: no per-image lists
    assert row == {"robust_accuracy": 0.5}
    assert out["default"]["gradients"] == {"tiny_share": 0.0}


def fgsm_rising() -> dict:
    """A pass saved before checks carried ids: FGSM's accuracy rises from eps 0.1 to 0.3."""
    table = {"0.0": 0.9, "0.1": 0.4, "0.3": 0.6}
    return {
        "clean": {"accuracy": 0.9},
        "attacks": {"fgsm": {e: {"robust_accuracy": a} for e, a in table.items()}},
        "checks": [{"check": "accuracy falls with eps", "passed": False}],
    }


@pytest.mark.parametrize("attack, rises", [("fgsm", True), ("pgd-linf", False)])
def test_record_checks_recheck_old_passes_and_fgsm_rises_reads_only_fgsm(attack, rises):
    flagged = {"id": "falls-with-eps", "attack": attack, "verdict": "flag", "passed": False}
    current = {"checks": [flagged]}
    assert protocol.record_checks({"default": current, "strong": current}) == [flagged, flagged]
    assert protocol.fgsm_rises({"default": current, "strong": current}) is rises
    old = protocol.record_checks({"default": fgsm_rising(), "strong": {"checks": []}})
    found = {(c["id"], c["attack"], c["verdict"]) for c in old}
    assert ("falls-with-eps", "fgsm", "flag") in found
    assert protocol.fgsm_rises({"default": fgsm_rising(), "strong": {"checks": []}})
    assert protocol.masking_signs({"default": fgsm_rising(), "strong": {"checks": []}}) == []


def test_masking_signs_name_each_sign_once_across_both_passes():
    square = {"id": "gradient-free-not-stronger", "attack": "square", "verdict": "flag"}
    passed = {**square, "attack": "pgd-linf", "verdict": "pass"}
    record = {"default": {"checks": [square, passed]}, "strong": {"checks": [square]}}
    assert protocol.masking_signs(record) == ["Square beats the white-box attacks"]
