"""The metric registry's additions: per-image purity views, the images of largest curvature,
by-construction reasons, and own-block loss sensitivity (golden values on heads whose answer is
known from their wiring)."""

import math

import pytest
import torch
from torch import nn

from herd_cls.analysis.evidence import Evidence
from herd_cls.analysis.scores import METRICS, loss_block_sensitivity, score_all
from herd_cls.analysis.sweep import block_sweep_effect
from herd_cls.layout import BlockLayout
from herd_cls.metrics import attribution_alignment, sweep_specificity
from herd_cls.heads import BlockHead
from herd_cls.purity import Purity, measure_purity


def routed_head(reads: list[int], gain: float = 5.0):
    """logit k = gain * z[reads[k]] (a dim the logit does not read is ignored)."""
    idx = torch.tensor(reads)
    return lambda z: gain * z[:, idx]


LAYOUT = BlockLayout(3, 1)
Z = torch.zeros(9, 3)
Y = torch.tensor([0, 1, 2] * 3)


@pytest.mark.parametrize(
    "reads, per_class",
    [
        # each logit reads its own block: moving it moves the true logit
        (
            [0, 1, 2],
            [1.0, 1.0, 1.0],
        ),
        # logit k reads block k+1: the true logit moves with another block
        (
            [1, 2, 0],
            [0.0, 0.0, 0.0],
        ),
    ],
)
def test_loss_block_sensitivity_follows_the_wiring(reads, per_class):
    score = loss_block_sensitivity(routed_head(reads), Z, Y, LAYOUT, step=1.0)
    assert score.per_class == per_class and score.overall == sum(per_class) / 3


def test_loss_block_sensitivity_when_one_block_carries_every_loss():
    # only block 0 moves any logit: class 0 wins, classes 1 and 2 lose (their own blocks change
    # nothing, and a tie at zero against block 2's zero does not count as more)
    head = lambda z: torch.stack([z[:, 0], -z[:, 0], torch.zeros(len(z))], 1)
    score = loss_block_sensitivity(head, Z, Y, LAYOUT, step=1.0)
    assert score.per_class == [1.0, 0.0, 0.0] and score.overall == pytest.approx(1 / 3)
    flat = loss_block_sensitivity(lambda z: torch.zeros(len(z), 3), Z, Y, LAYOUT, step=1.0)
    assert flat.per_class == [0.0, 0.0, 0.0]  # nothing moves the loss: no image's own block wins


class _Model(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.classify, self.decode = head, None


def test_block_head_makes_the_marked_metrics_one_whatever_the_weights():
    """The reasons Metric.by_construction gives are true: a random block head scores 1 on both."""
    torch.manual_seed(0)
    layout = BlockLayout(4, 2)
    head = BlockHead(layout, hidden=5)
    z, y = torch.randn(80, 8), torch.arange(80) % 4
    spec = sweep_specificity(block_sweep_effect(_Model(head), z, y, layout, z.std(0)))
    assert spec["sweep_specificity_per_class"] == pytest.approx([1.0] * 4)
    grads = torch.autograd.functional.jacobian(lambda v: head(v).gather(1, y.view(-1, 1)).sum(), z)
    assert attribution_alignment(grads, y, layout)["attribution_alignment"] == pytest.approx(1.0)
    block = {"head": "block", "shared_dims": 0}
    assert "by construction" in METRICS.get("sweep_specificity").by_construction(block)
    assert "by construction" in METRICS.get("attribution_alignment").by_construction(block)
    # an mlp head, or shared dims for the alignment, leave them to training
    assert (
        METRICS.get("sweep_specificity").by_construction({"head": "mlp", "shared_dims": 0}) is None
    )
    assert (
        METRICS.get("attribution_alignment").by_construction({"head": "block", "shared_dims": 2})
        is None
    )
    assert METRICS.get("loss_block_sensitivity").by_construction(block) is None


def _purity(per_image, mass, labels, per_class=(0.5, 0.5)):
    return Purity(
        torch.tensor(per_class),
        torch.tensor(per_image),
        torch.tensor(labels),
        torch.zeros(2, 2, 2),
        "exact",
        None if mass is None else torch.tensor(mass),
    )


def test_images_of_largest_mass_and_how_many_hold_ninety_percent():
    # class 0: masses 1, 8, 1 (one image holds 80%); class 1: masses 5, 5, 0
    p = _purity([0.9, 0.1, 0.95, 0.6, 0.7, 0.2], [1.0, 8.0, 1.0, 5.0, 5.0, 0.0], [0, 0, 0, 1, 1, 1])
    assert p.top_mass(0, 2).tolist() == [1, 0] and p.top_mass(1, 8).tolist() == [3, 4, 5]
    assert p.mass_share().tolist() == pytest.approx([0.1, 0.8, 0.1, 0.5, 0.5, 0.0])
    assert (
        p.mass_holders(0, 0.9) == 2 and p.mass_holders(1, 0.9) == 2 and p.mass_holders(1, 0.5) == 1
    )
    overall = p.image_overall()
    assert overall["share_at_least_half"] == pytest.approx(4 / 6) and overall[
        "median"
    ] == pytest.approx(0.6)
    old = _purity([0.9, 0.1], None, [0, 1])  # a Purity made before per_image_mass existed
    assert (
        old.top_mass(0).tolist() == []
        and old.mass_holders(0) is None
        and math.isnan(old.mass_share()[0])
    )


def test_class_mean_is_the_mass_weighted_mean_of_the_measured_images():
    """measure_purity's per_image_mass comes from the same H as the shares: weighting each image's
    own share by its mass gives back the class-mean purity."""
    torch.manual_seed(1)
    layout = BlockLayout(3, 2)
    model = _Encoded(nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 3)))
    x, y = torch.randn(30, 6), torch.arange(30) % 3
    p = measure_purity(model, [(x, y)], layout, hessian_method="exact")
    assert p.per_image_mass.shape == (30,) and (p.per_image_mass > 0).all()
    for c in range(3):
        rows = p.labels == c
        weighted = (p.per_image[rows] * p.per_image_mass[rows]).sum() / p.per_image_mass[rows].sum()
        assert float(weighted) == pytest.approx(float(p.per_class[c]), rel=1e-5)


class _Encoded(nn.Module):
    def __init__(self, head):
        super().__init__()
        self.head = head

    def encode(self, x):
        return x

    def classify(self, z):
        return self.head(z)


def test_score_all_skips_metrics_fixed_by_construction():
    torch.manual_seed(0)
    layout = BlockLayout(2, 2)
    z, y = torch.randn(20, 4), torch.arange(20) % 2
    model = _Encoded(BlockHead(layout, hidden=3))
    model.decode = None
    purity = measure_purity(model, [(z, y)], layout, hessian_method="exact")
    ev = Evidence(
        model,
        layout,
        z.view(20, 1, 2, 2),
        z,
        y,
        model.classify(z).detach(),
        purity,
        torch.rand(20, 4),
        {"head": "block", "shared_dims": 0},
    )
    scores = score_all(ev)
    assert "sweep_specificity" not in scores and "attribution_alignment" not in scores
    assert {"image_purity_median", "loss_block_sensitivity", "block_purity"} <= set(scores)
    assert scores["image_purity_median"].overall == pytest.approx(float(purity.per_image.median()))
    ev.config = {"head": "mlp", "shared_dims": 0}
    assert "sweep_specificity" in score_all(ev)


def test_factor_metrics_are_registry_entries_scoring_latents_against_factors_and_class():
    """MIG, DCI and SAP come from METRICS like every other score: the library's functions on the
    test latents, the factors every image has (one with a NaN is left out) and the class; no
    factors, no score."""
    import numpy as np

    from herd_cls import disentanglement as dis

    rng = np.random.default_rng(0)
    y = torch.arange(200) % 2
    factors = {"size": rng.uniform(0, 1, 200), "broken": np.r_[np.nan, rng.uniform(0, 1, 199)]}
    z = torch.tensor(np.c_[factors["size"], y.numpy(), rng.normal(size=200)], dtype=torch.float32)
    layout = BlockLayout(2, 1, shared_dims=1)

    def evidence(found):
        return Evidence(None, layout, None, z, y, None, None, None, None, found)

    expected = {"size": factors["size"], "class": y.double().numpy()}
    zz = z.double().numpy()
    assert METRICS.get("mig").compute(evidence(factors)).overall == pytest.approx(
        dis.mig(zz, expected)
    )
    assert METRICS.get("sap").compute(evidence(factors)).overall == pytest.approx(
        dis.sap(zz, expected)
    )
    dci = dis.dci(zz, expected)
    assert METRICS.get("dci_disentanglement").compute(evidence(factors)).overall == pytest.approx(
        dci["disentanglement"]
    )
    # one dim per factor: well separated
    assert METRICS.get("mig").compute(evidence(factors)).overall > 0.5
    assert METRICS.get("mig").compute(evidence(None)) is None


def test_decoder_off_diagonal_is_a_metric_of_the_oracle_hessians():
    """The decoder heatmap's off-diagonal share is a registry score: 1 - trace / sum of the mean
    |H| of the reconstruction loss w.r.t. z, here with H from per-sample autograd; a decoder whose
    pixels each read one dim scores 0; no decoder, no score."""
    from torch.autograd.functional import hessian

    torch.manual_seed(0)
    layout = BlockLayout(2, 2)
    z, x = torch.randn(6, 4), torch.rand(6, 5)
    mixing = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 5))
    # pixel j reads only z_j: the loss is a sum of one-dim terms
    additive = lambda v: torch.cat([torch.tanh(v), torch.zeros(len(v), 1)], 1)
    config = {"recon_loss": "mse"}

    def score(decoder):
        model = _Encoded(BlockHead(layout))
        model.decode = decoder
        ev = Evidence(model, layout, x, z, torch.arange(6) % 2, None, None, None, config)
        return METRICS.get("decoder_off_diagonal").compute(ev)

    loss = lambda v, i: ((mixing(v[None]) - x[i : i + 1]) ** 2).mean()
    hbar = torch.stack([hessian(lambda v: loss(v, i), z[i]) for i in range(6)]).abs().mean(0)
    expected = 1 - float(hbar.diagonal().sum() / hbar.sum())
    assert score(mixing).overall == pytest.approx(expected, rel=1e-4) and 0.1 < expected < 1
    assert score(additive).overall == pytest.approx(0.0, abs=1e-6)
    assert score(None) is None
    assert METRICS.get("decoder_off_diagonal").chance_level(layout) == pytest.approx(0.75)
