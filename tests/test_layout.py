"""The class-block layout: golden blocks, masks and errors."""

import pytest
import torch

from herd_cls.layout import BlockLayout
from herd_cls.registry import HerdError


def test_blocks_and_shared_dims_golden():
    layout = BlockLayout(num_classes=3, dims_per_class=2, shared_dims=2)
    assert layout.latent_dim == 8
    assert layout.masks.int().tolist() == [
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0],
    ]
    assert layout.block(2).tolist() == [4, 5] and layout.shared.tolist() == [6, 7]
    assert [layout.kind(d, 1) for d in (0, 2, 7)] == ["other", "own", "shared"]
    assert layout.chance() == pytest.approx((2 / 8) ** 2)


def test_own_masks_follow_the_labels():
    layout = BlockLayout(2, 2, 1)
    own = layout.own(torch.tensor([1, 0]))
    assert own.int().tolist() == [[0, 0, 1, 1, 0], [1, 1, 0, 0, 0]]
    pairs = layout.own_pairs(torch.tensor([1]))[0]
    assert pairs.sum() == 4 and pairs[2, 3] and not pairs[0, 2] and not pairs[4, 4]


def test_split_checks_the_dims_and_names_the_fix():
    assert BlockLayout.split(10, 22, 2) == BlockLayout(10, 2, 2)
    with pytest.raises(
        HerdError, match="does not split into 3 class blocks; use latent_dim = 3 \\* dims_per_class"
    ):
        BlockLayout.split(3, 8, 0)
    with pytest.raises(HerdError, match="out of range; valid classes are 0..9"):
        BlockLayout(10, 2).block(10)
    with pytest.raises(HerdError, match="at least 2 classes"):
        BlockLayout(1, 4)
