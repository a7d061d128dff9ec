import math

import pytest

import torch

from herd_cls.purity import class_block_purity
from herd_cls.layout import BlockLayout


def test_block_purity_golden_values():
    blocks = BlockLayout.split(2, 5, shared_dims=1)  # B_0 = {0, 1}, B_1 = {2, 3}, shared {4}
    hbar = torch.zeros(2, 5, 5)
    hbar[0, 0, 1] = hbar[0, 1, 0] = 3.0  # inside B_0 x B_0
    hbar[0, 0, 4] = -2.0  # outside; |.| counts
    hbar[1, 4, 4] = 1.0  # class 1: shared dim only -> purity 0
    assert class_block_purity(hbar, blocks).tolist() == [6 / 8, 0.0]


def test_block_purity_of_absent_class_is_nan_and_uniform_mass_is_chance():
    blocks = BlockLayout.split(4, 12, shared_dims=0)
    hbar = torch.ones(4, 12, 12)
    hbar[2] = 0
    purity = class_block_purity(hbar, blocks)
    assert math.isnan(purity[2]) and torch.allclose(purity[[0, 1, 3]], torch.tensor((3 / 12) ** 2))


def _block_latents(n=600, num_classes=4, dims=2, seed=0):
    """Latents whose class c lives only in B_c: z[:, B_c] carries the class indicator plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    z = 0.05 * torch.randn(n, num_classes * dims, generator=g)
    for c in range(num_classes):
        z[y == c, c * dims : (c + 1) * dims] += 1.0 + 0.3 * torch.rand(
            (y == c).sum(), dims, generator=g
        )
    return z, y, BlockLayout.split(num_classes, num_classes * dims)


def _rotation(d, seed=1):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    return q


def test_attribution_alignment_perfect_and_rotated():
    from herd_cls.metrics import attribution_alignment

    z, y, blocks = _block_latents()
    assert attribution_alignment(z * blocks.own(y), y, blocks)["attribution_alignment"] == 1.0
    rotated = attribution_alignment((z * blocks.own(y)) @ _rotation(8), y, blocks)[
        "attribution_alignment"
    ]
    assert rotated < 0.5  # chance is n / d = 0.25


def test_sweep_specificity_golden_values():
    from herd_cls.metrics import sweep_specificity

    assert sweep_specificity(torch.eye(5) * 3)["sweep_specificity"] == 1.0
    assert sweep_specificity(torch.ones(5, 5))["sweep_specificity"] == pytest.approx(0.2)
    res = sweep_specificity(torch.tensor([[3.0, 1.0], [0.0, 0.0]]))
    assert res["sweep_specificity_per_class"][0] == 0.75 and math.isnan(
        res["sweep_specificity_per_class"][1]
    )


def test_latent_label_information_golden_values():
    from herd_cls.metrics import latent_label_information

    y = torch.arange(400) % 4
    noise = torch.rand(400, generator=torch.Generator().manual_seed(0))
    z = torch.stack([y.float(), noise], 1)  # dim 0 is the label itself, dim 1 is independent
    res = latent_label_information(z, y, 4, bins=4)
    assert res["mi_label"][0] == pytest.approx(math.log(4))
    assert res["mi_label"][1] < 0.02
    p = 0.25  # I(y; y == c) = H(Bernoulli(1/4))
    assert res["mi_class"][2][0] == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))


def test_embedding_separates_classes():
    from herd_cls.metrics import embedding_2d

    z, y, _ = _block_latents(n=200)
    for method in ("pca", "tsne"):
        e = embedding_2d(z, method)
        assert e.shape == (200, 2)
        centers = torch.stack([e[y == c].mean(0) for c in range(4)])
        spread = torch.stack([e[y == c].std(0).norm() for c in range(4)]).max()
        assert torch.cdist(centers, centers).add(torch.eye(4) * 1e9).min() > spread


def test_latent_label_information_equals_scikit_learns_mutual_info_score():
    """The one-table-per-dim computation against sklearn's mutual_info_score, pair by pair, at 30
    classes."""
    import numpy as np
    import torch
    from sklearn.metrics import mutual_info_score

    from herd_cls.metrics import latent_label_information

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 30, (900,), generator=g)
    z = torch.randn(900, 6, generator=g)
    z[:, 0] += y.float() / 5
    res = latent_label_information(z, y, 30)
    binned = [np.digitize(c, np.histogram_bin_edges(c, 20)[1:-1]) for c in z.numpy().T]
    assert np.allclose(
        res["mi_label"], [mutual_info_score(y.numpy(), c) for c in binned], atol=1e-12
    )
    assert np.allclose(
        res["mi_class"],
        [[mutual_info_score(y.numpy() == k, c) for c in binned] for k in range(30)],
        atol=1e-12,
    )


def test_concept_purity_golden():
    """One-vs-rest AUC per class, counted by hand: class 0's positives (0.9, 0.4) against negatives
    (0.5, 0.1) win 3 of 4 pairs; class 1's column orders perfectly; class 2 has no images (NaN, left
    out of the mean)."""
    from herd_cls.metrics import concept_purity

    scores = torch.tensor([[0.9, 0.1, 0.0], [0.4, 0.2, 0.0], [0.5, 0.3, 0.0], [0.1, 0.4, 0.0]])
    result = concept_purity(scores, torch.tensor([0, 0, 1, 1]))
    assert result["concept_purity_per_class"][:2] == [0.75, 1.0]
    assert math.isnan(result["concept_purity_per_class"][2])
    assert result["concept_purity"] == 0.875


def test_block_energy_golden():
    """Squared standardised values summed over each block of 2 dims: dims 0, 1 and 3 of the two
    images standardise to +-1/sqrt 2 (1/2 squared); dim 2 is constant and counts 0."""
    from herd_cls.metrics import block_energy

    z = torch.tensor([[0.0, 2.0, 7.0, 5.0], [2.0, 4.0, 7.0, 1.0]])
    energy = block_energy(z, BlockLayout(2, 2))
    torch.testing.assert_close(energy, torch.tensor([[1.0, 0.5], [1.0, 0.5]]))
