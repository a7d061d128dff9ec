"""Golden values for the ground-truth scores: a code that is the factors scores ~1, a random
rotation of it (every dim mixes every factor) scores low, noise scores chance."""

import numpy as np
import pytest

from herd_cls.disentanglement import (
    _discretise,
    beta_vae_score,
    dci,
    dim_factors,
    disentanglement_scores,
    factor_scores,
    factor_vae_score,
    mig,
    sap,
)
from herd_cls.registry import HerdError

N = 3000


@pytest.fixture(scope="module")
def code():
    rng = np.random.default_rng(0)
    factors = {name: rng.uniform(0, 1, N) for name in ("a", "b", "c")}
    perfect = np.stack(list(factors.values()), 1) + 0.001 * rng.normal(size=(N, 3))
    perfect = np.concatenate([perfect, 0.001 * rng.normal(size=(N, 1))], 1)  # plus one inactive dim
    hadamard = 0.5 * np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
    rotated = (perfect - 0.5) @ hadamard  # every dim mixes every factor with equal weight
    noise = rng.normal(size=(N, 4))
    return factors, perfect, rotated, noise


def test_discretise_keeps_discrete_levels_and_bins_continuous_values():
    assert _discretise(np.array([3.0, 7.0, 3.0, 9.0])).tolist() == [0, 1, 0, 2]
    binned = _discretise(np.linspace(0, 1, 1000))
    assert binned.min() == 0 and binned.max() == 19 and np.bincount(binned).min() >= 49


def test_mig_golden(code):
    factors, perfect, rotated, noise = code
    assert mig(perfect, factors) > 0.9
    assert mig(rotated, factors) < 0.3
    assert mig(noise, factors) < 0.05


def test_mig_by_hand_for_a_copied_binary_factor():
    # z0 = v exactly, z1 = v too: the gap is 0; drop the copy and it is H(v)/H(v) = 1
    v = np.array([0.0, 1.0] * 50)
    assert mig(np.stack([v, v], 1), {"v": v}) == pytest.approx(0.0)
    assert mig(np.stack([v, np.zeros_like(v)], 1), {"v": v}) == pytest.approx(1.0)


def test_dim_factors_names_each_dims_factor(code):
    factors, perfect, _, noise = code
    named = dim_factors(perfect, factors)
    assert [n for n, _ in named[:3]] == ["a", "b", "c"] and all(mi > 0.9 for _, mi in named[:3])
    assert named[3][1] < 0.05 and max(mi for _, mi in dim_factors(noise, factors)) < 0.05
    # by hand: a copy of a binary factor carries all of its entropy, a constant none
    v = np.array([0.0, 1.0] * 50)
    assert dim_factors(np.stack([np.zeros_like(v), v], 1), {"v": v}) == [
        ("v", 0.0),
        ("v", pytest.approx(1.0)),
    ]


def test_dci_golden(code):
    factors, perfect, rotated, _ = code
    good, bad = dci(perfect, factors), dci(rotated, factors)
    assert (
        good["disentanglement"] > 0.9
        and good["completeness"] > 0.9
        and good["informativeness"] > 0.95
    )
    assert bad["disentanglement"] < 0.5 and bad["completeness"] < 0.5
    assert bad["informativeness"] > 0.8  # a rotation loses no information, only its alignment


def test_sap_golden(code):
    factors, perfect, rotated, noise = code
    assert sap(perfect, factors) > 0.95
    assert sap(rotated, factors) < 0.5
    assert sap(noise, factors) < 0.05


def test_factor_scores_are_the_registry_metrics_golden(code):
    from herd_cls.analysis.scores import METRICS

    factors, perfect, rotated, _ = code
    good, bad = factor_scores(perfect, factors), factor_scores(rotated, factors)
    assert set(good) <= set(METRICS.names())  # one name per score, the registry's
    assert good["mig"] > 0.9 and good["dci_disentanglement"] > 0.9 and good["sap"] > 0.5
    assert bad["mig"] < 0.2 and bad["dci_disentanglement"] < 0.5
    assert bad["dci_informativeness"] > 0.8


def test_beta_vae_and_factor_vae_scores_golden(code):
    factors, perfect, rotated, noise = code
    assert beta_vae_score(perfect, factors) > 0.95
    assert factor_vae_score(perfect, factors) > 0.95
    assert factor_vae_score(rotated, factors) < factor_vae_score(perfect, factors) - 0.2
    chance = 1 / len(factors)
    assert beta_vae_score(noise, factors) < chance + 0.2
    assert factor_vae_score(noise, factors) < chance + 0.2


def test_class_specific_factor_is_scored_only_on_its_class():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 1000)
    shared = rng.uniform(size=2000)
    own = np.where(labels == 1, rng.uniform(size=2000), np.nan)  # class 1 only
    z = np.stack([shared, np.nan_to_num(own, nan=0.0), labels + 0.01 * rng.normal(size=2000)], 1)
    out = disentanglement_scores(z, {"shared": shared, "own": own}, labels, ["a", "b"])
    assert out["per_class"]["a"]["factors"] == ["shared"]
    assert out["per_class"]["b"]["factors"] == ["shared", "own"]
    assert out["per_class"]["b"]["mig"] > 0.8
    assert np.isnan(out["per_class"]["a"]["beta_vae"])  # one factor: naming it is trivial
    assert set(out["class_mean"]) == set(out["overall"])


def test_mig_own_block_counts_only_the_factors_a_class_keeps_in_its_block():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 1000)
    shared, own = rng.uniform(size=2000), rng.uniform(size=2000)
    z = np.stack([shared, own, 0.01 * rng.normal(size=2000)], 1)  # dim 2 carries nothing
    factors = {"shared": shared, "own": own}
    score = lambda blocks: disentanglement_scores(z, factors, labels, blocks=blocks)["per_class"]
    whole = score([[0, 1], np.array([True, True, False])])["1"]  # both factors inside the block
    assert whole["mig_own_block"] == pytest.approx(whole["mig"], abs=0.02)
    assert whole["mig"] > 0.8
    # "shared" lives outside class 1's block: only "own" has a gap there, so half the score
    half = score([[0, 1], [1, 2]])["1"]["mig_own_block"]
    assert half == pytest.approx(whole["mig"] / 2, abs=0.05)
    assert "mig_own_block" not in disentanglement_scores(z, factors, labels)["per_class"]["1"]


def test_nan_factors_are_refused_outside_the_per_class_path():
    with pytest.raises(HerdError, match="NaN"):
        mig(np.zeros((4, 2)), {"v": np.array([0.0, np.nan, 1.0, 2.0])})
