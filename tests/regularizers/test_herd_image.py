"""The per-image purity penalties (image-purity, dual-purity) against formulas written out by
hand."""

import pytest
import torch

from herd_cls.layout import BlockLayout
from herd_cls.purity import image_share
from herd_cls.regularizers.herd import HeRD
from herd_cls.regularizers.herd_forms import CLASS_VARIANTS, class_mask
from herd_cls.regularizers.herd_penalty import class_penalty, image_penalty
from toy_heads import float64, mlp, oracle  # noqa: F401  (float64: an autouse fixture)


def _shares_by_loop(H, y, blocks):
    """Each image's own-block share of sum |H_i|, one image and one entry at a time."""
    out = []
    for i in range(len(y)):
        own = blocks.block(int(y[i])).tolist()
        inside = sum(abs(H[i, j, k].item()) for j in own for k in own)
        total = H[i].abs().sum().item()
        out.append(inside / total if total > 0 else 1.0)
    return out


def _image_penalty_by_loop(shares, y, num_classes):
    per_class = []
    for c in range(num_classes):
        mine = [1 - s for s, label in zip(shares, y.tolist()) if label == c]
        if mine:
            per_class.append(sum(mine) / len(mine))
    return sum(per_class) / len(per_class)


def test_image_share_golden():
    blocks = BlockLayout.split(2, 4)
    H = torch.zeros(3, 4, 4)
    H[0, 0, 0], H[0, 1, 0], H[0, 3, 3] = 2.0, -1.0, 1.0  # class 0: 3 of 4 inside
    H[1, 2, 3], H[1, 0, 0] = 1.0, -3.0  # class 1: 1 of 4 inside
    y = torch.tensor([0, 1, 1])  # the third image has no curvature: pure
    assert image_share(H, y, blocks).tolist() == pytest.approx([0.75, 0.25, 1.0])
    # class 0: 0.25; class 1: mean(0.75, 0) -> mean over the two classes
    assert image_penalty(image_share(H, y, blocks), y, 2).item() == pytest.approx(
        (0.25 + 0.375) / 2
    )


def test_image_penalties_equal_hand_formulas_on_oracle_hessians():
    torch.manual_seed(4)
    head, z, y = mlp(6, 3), torch.randn(17, 6), torch.tensor([0, 1, 1, 2] * 4 + [1])
    H = oracle(head, z, y, "ce")
    blocks = BlockLayout.split(3, 6)
    shares = _shares_by_loop(H, y, blocks)
    per_image = _image_penalty_by_loop(shares, y, 3)
    assert HeRD(BlockLayout.split(3, 6), variant="image-purity")(
        head, z, y, labels=y
    ).item() == pytest.approx(per_image)
    class_mean = class_penalty(H, y, class_mask(BlockLayout.split(3, 6), variant="purity")).item()
    dual = HeRD(BlockLayout.split(3, 6), variant="dual-purity")(head, z, y, labels=y).item()
    assert dual == pytest.approx((class_mean + per_image) / 2)
    # a class's weight does not depend on how many images it has in the batch
    assert per_image != pytest.approx(sum(1 - s for s in shares) / len(shares))


def test_image_penalty_sums_over_processes_like_one_batch():
    torch.manual_seed(5)
    shares, y = torch.rand(10), torch.tensor([0, 0, 1, 2, 2, 2, 1, 0, 2, 2])
    onehot = torch.nn.functional.one_hot(y[4:], 3).double()
    # its per-class impurity sums, counts
    other_process = iter([onehot.T @ (1 - shares[4:]), onehot.sum(0)])
    all_reduce = lambda t: t + next(other_process)
    assert image_penalty(shares[:4], y[:4], 3, reduce=all_reduce).item() == pytest.approx(
        image_penalty(shares, y, 3).item()
    )


def test_probe_image_penalty_tracks_exact_shares():
    torch.manual_seed(8)
    head, z, y = mlp(6, 3), torch.randn(30, 6), torch.arange(30) % 3
    H = oracle(head, z, y, "ce")
    blocks = BlockLayout.split(3, 6)
    own = blocks.own(y)
    inside = (H.pow(2) * (own[:, :, None] & own[:, None, :])).sum((1, 2))
    total = H.pow(2).sum((1, 2))
    want = _image_penalty_by_loop((inside / total).tolist(), y, 3)
    herd = HeRD(BlockLayout.split(3, 6), variant="image-purity", probes=2000)
    assert herd(head, z, y, labels=y).item() == pytest.approx(want, abs=0.03)
    assert CLASS_VARIANTS.get("image-purity").from_masses(
        inside, total, y, 3, None
    ).item() == pytest.approx(want)
