"""The one purity path: golden values for both views, and measure_purity against autograd
Hessians."""

import math

import pytest
import torch
from torch.autograd.functional import hessian

from herd_cls.layout import BlockLayout
from herd_cls.purity import Purity, image_share, measure_purity
from toy_heads import oracle  # per-sample autograd Hessians of F.cross_entropy


def test_image_purity_golden():
    layout = BlockLayout.split(2, 4)  # class 0: dims 0-1, class 1: dims 2-3
    H = torch.zeros(3, 4, 4)
    H[0, 0, 0], H[0, 1, 0], H[0, 3, 3] = 2.0, -1.0, 1.0  # class 0: 3 of 4 inside
    H[1, 2, 3], H[1, 0, 0] = 1.0, -3.0  # class 1: 1 of 4 inside
    labels = torch.tensor([0, 1, 1])  # the third image has no curvature
    share = image_share(H, labels, layout, empty=float("nan"))
    assert share[:2].tolist() == [0.75, 0.25] and share[2].isnan()


def test_per_image_view_golden():
    p = Purity(
        per_class=torch.tensor([0.9, 0.5]),
        per_image=torch.tensor([1.0, 0.2, 0.6, 0.4, 0.0, float("nan")]),
        labels=torch.tensor([0, 0, 0, 1, 1, 1]),
        hbar=torch.zeros(2, 4, 4),
        method="exact",
    )
    view = p.image_view()
    assert view["mean"] == pytest.approx([0.6, 0.2])
    assert view["median"] == pytest.approx([0.6, 0.0])  # torch's median: the lower middle value
    assert view["share_at_least_half"] == pytest.approx([2 / 3, 0.0])
    assert p.mean == pytest.approx(0.7)
    assert p.summary()["purity_samples"] == 6


class _Model(torch.nn.Module):
    """A linear encoder and a GELU head: curvature everywhere, so both views have work to do."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc = torch.nn.Linear(5, 6)
        self.classify = torch.nn.Sequential(
            torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 3)
        )
        self.decode = None

    def encode(self, x):
        return self.enc(x)


def test_measure_purity_matches_per_sample_autograd_hessians():
    model = _Model().train()
    x, y = torch.randn(10, 5), torch.arange(10) % 3
    layout = BlockLayout.split(3, 6)
    result = measure_purity(model, [(x[:6], y[:6]), (x[6:], y[6:])], layout, max_samples=9)
    assert model.training  # the caller's mode is left alone
    z = model.encode(x[:9]).detach()
    H = oracle(model.classify, z[:9], y[:9], "ce").abs()
    for c in range(3):
        hbar = H[y[:9] == c].mean(0)
        own = [2 * c, 2 * c + 1]
        assert result.per_class[c].item() == pytest.approx(
            (hbar[own][:, own].sum() / hbar.sum()).item(), rel=1e-4
        )
    own = torch.nn.functional.one_hot(y[:9], 3).repeat_interleave(2, dim=1).bool()
    shares = (H * (own[:, :, None] & own[:, None, :])).sum((1, 2)) / H.sum((1, 2))
    torch.testing.assert_close(result.per_image, shares, rtol=1e-4, atol=1e-6)
    assert len(result.labels) == 9 and result.method.startswith("exact")


def test_wide_latents_are_measured_exactly_in_chunks(monkeypatch):
    """Above the training path's exact limit (d = 64) measuring still uses exact |H|, one definition
    for every run, in chunks of images."""
    import herd_cls.curvature as curvature

    monkeypatch.setattr(curvature, "EXACT_CHUNK", 3 * 96 * 96)  # 3 images per chunk
    torch.manual_seed(1)
    d, K = 96, 3
    model = _Model()
    model.enc = torch.nn.Linear(5, d)
    model.classify = torch.nn.Sequential(
        torch.nn.Linear(d, 16), torch.nn.GELU(), torch.nn.Linear(16, K)
    )
    x, y = torch.randn(7, 5), torch.arange(7) % K
    layout = BlockLayout.split(K, d)
    result = measure_purity(model, [(x, y)], layout)
    assert result.method.startswith("exact")
    z = model.encode(x).detach()
    H = oracle(model.classify, z[:7], y[:7], "ce").abs()
    own = layout.own_pairs(y)
    torch.testing.assert_close(
        result.per_image, (H * own).sum((1, 2)) / H.sum((1, 2)), rtol=1e-4, atol=1e-6
    )

    # images of 5 pixels
    model.decode = torch.nn.Sequential(torch.nn.Linear(d, 5), torch.nn.Sigmoid())
    images = torch.rand(7, 5)
    decoded = measure_purity(model, [(images, y)], layout, wrt="autoencoder", recon_loss="mse")
    # a decoder beyond 64 dims (where training estimates) is measured exactly as well
    z = model.encode(images).detach()
    H = torch.stack(
        [
            hessian(lambda v: (model.decode(v[None]) - images[i : i + 1]).pow(2).mean(), z[i])
            for i in range(7)
        ]
    ).abs()
    assert decoded.method.startswith("exact")
    torch.testing.assert_close(
        decoded.per_image, (H * own).sum((1, 2)) / H.sum((1, 2)), rtol=1e-4, atol=1e-6
    )


def test_standard_error_of_class_mean_purity_golden_values():
    """Delta-method standard error of a ratio of sums, classes independent, worked by hand: class
    0's images (share 1, mass 1) and (0, 1) give R = 0.5 and variance 2 x (0.25 + 0.25) / 2^2 =
    0.25; class 1's two equal images give 0; the mean of the two classes has standard error
    sqrt(0.25 + 0) / 2 = 0.25."""
    purity = Purity(
        per_class=torch.tensor([0.5, 0.5]),
        per_image=torch.tensor([1.0, 0.0, 0.5, 0.5]),
        labels=torch.tensor([0, 0, 1, 1]),
        hbar=torch.zeros(2, 4, 4),
        method="exact |H|",
        per_image_mass=torch.tensor([1.0, 1.0, 2.0, 2.0]),
    )
    assert purity.standard_error() == pytest.approx(0.25)
    assert purity.summary()["block_purity_standard_error"] == pytest.approx(0.25)
    lone = Purity(
        torch.tensor([0.5, 1.0]),
        torch.tensor([1.0, 0.0, 1.0]),
        torch.tensor([0, 0, 1]),
        torch.zeros(2, 4, 4),
        "exact |H|",
        torch.ones(3),
    )
    assert math.isnan(lone.standard_error())  # one image cannot say how much its class varies


def test_many_classes_measure_a_block_head_from_its_masses_without_the_mean_hessians(monkeypatch):
    """Above HBAR_MAX no (K, d, d) mean |H| is kept, and a block head's purity comes from its
    closed-form masses: the same per-class and per-image values as the oracle's |H|."""
    import herd_cls.curvature as curvature
    import herd_cls.purity as purity
    from herd_cls.heads import BlockHead

    torch.manual_seed(2)
    layout = BlockLayout(3, 2, shared_dims=1)
    model = _Model()
    model.enc, model.classify = torch.nn.Linear(5, layout.latent_dim), BlockHead(layout, hidden=6)
    x, y = torch.randn(9, 5), torch.arange(9) % 3
    exact = measure_purity(model, [(x, y)], layout)
    monkeypatch.setattr(purity, "HBAR_MAX", 0)
    monkeypatch.setattr(curvature, "_chunked_hessians", lambda *a: pytest.fail("formed H"))
    fast = measure_purity(model, [(x, y)], layout)
    assert exact.hbar is not None and fast.hbar is None
    torch.testing.assert_close(fast.per_class, exact.per_class, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast.per_image, exact.per_image, rtol=1e-4, atol=1e-6)
    z = model.encode(x).detach()
    H = oracle(model.classify, z[:9], y[:9], "ce").abs()
    own = layout.own_pairs(y)
    torch.testing.assert_close(
        fast.per_image, (H * own).sum((1, 2)) / H.sum((1, 2)), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("block_head", [False, True], ids=["dense H", "block head closed form"])
def test_block_shares_are_each_images_share_in_every_block_against_the_oracle(
    monkeypatch, block_head
):
    """Purity.block_shares (N, K): each image's share of its |H| in every class block, from the
    dense |H| and from a block head's closed-form masses, against per-sample autograd Hessians; its
    own block's column is the per-image purity."""
    import herd_cls.purity as purity
    from herd_cls.heads import BlockHead

    torch.manual_seed(3)
    layout = BlockLayout(3, 2, shared_dims=1)
    model = _Model()
    model.enc = torch.nn.Linear(5, layout.latent_dim)
    model.classify = (
        BlockHead(layout, hidden=6)
        if block_head
        else torch.nn.Sequential(torch.nn.Linear(7, 8), torch.nn.GELU(), torch.nn.Linear(8, 3))
    )
    if block_head:
        monkeypatch.setattr(purity, "HBAR_MAX", 0)  # the closed-form path
    x, y = torch.randn(8, 5), torch.arange(8) % 3
    measured = measure_purity(model, [(x[:5], y[:5]), (x[5:], y[5:])], layout)
    z = model.encode(x).detach()
    H = oracle(model.classify, z[:8], y[:8], "ce").abs()
    expected = (
        torch.stack([H[:, 2 * k : 2 * k + 2, 2 * k : 2 * k + 2].sum((1, 2)) for k in range(3)], 1)
        / H.sum((1, 2))[:, None]
    )
    torch.testing.assert_close(measured.block_shares, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        measured.block_shares.gather(1, y[:, None])[:, 0], measured.per_image
    )
