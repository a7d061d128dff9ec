"""The data sets that need no files: dSprites-like shapes with their factor grids, and the factories
create_datasets splits."""

import numpy as np
import torch

from herd_cls.builtin_data import SHAPE_NAMES, digits_set, make_shapes, shapes_set, templates_set


def test_shapes_are_dsprites_like_with_their_factor_grids():
    images, labels, factors = make_shapes(600, image_size=24, seed=3)
    images2, _, _ = make_shapes(600, image_size=24, seed=3)
    assert torch.equal(images, images2) and images.shape == (600, 1, 24, 24)
    assert not torch.equal(images, make_shapes(600, image_size=24, seed=4)[0])
    assert set(labels.tolist()) == {0, 1, 2} and list(factors) == [
        "scale",
        "orientation",
        "pos_x",
        "pos_y",
    ]
    assert len(np.unique(factors["scale"])) == 6 and len(np.unique(factors["pos_x"])) == 32
    assert 0 <= factors["orientation"].min() and factors["orientation"].max() < 1
    # the factors are the ground truth: a bigger shape covers more pixels, x moves the ink's centre
    # of mass
    squares = labels == 0
    ink = images[squares].sum((1, 2, 3)).numpy()
    assert np.corrcoef(ink, factors["scale"][squares] ** 2)[0, 1] > 0.95
    cols = torch.arange(24, dtype=torch.float32)
    centre_x = ((images[:, 0].sum(1) * cols).sum(1) / images[:, 0].sum((1, 2))).numpy()
    assert np.corrcoef(centre_x, factors["pos_x"])[0, 1] > 0.99


def test_shapes_orientation_is_a_fraction_of_the_symmetry_period():
    """A square turned by 90 degrees is the same image, so it gets the same orientation value."""
    images, labels, factors = make_shapes(3000, image_size=16, seed=0)
    key = lambda i: (
        labels[i].item(),
        factors["scale"][i],
        factors["pos_x"][i],
        factors["pos_y"][i],
        factors["orientation"][i],
    )
    seen = {}
    for i in range(len(labels)):
        seen.setdefault(key(i), []).append(i)
    twins = [ids for ids in seen.values() if len(ids) > 1]
    assert twins and all(torch.allclose(images[ids[0]], images[ids[1]], atol=1e-6) for ids in twins)


def test_each_factory_gives_one_set_its_class_names_and_channels():
    for factory, names, chans in (
        (digits_set, [str(c) for c in range(10)], 1),
        (shapes_set, SHAPE_NAMES, 1),
        (templates_set, [f"template {c}" for c in range(4)], 3),
    ):
        parts, class_names, in_chans = factory("unused", False, 12, 40, 4)
        x, y = parts["all"][0]
        assert list(parts) == ["all"] and len(parts["all"]) == 40
        assert class_names == names and in_chans == chans and x.shape == (chans, 12, 12)
        assert isinstance(y, int) and 0 <= x.min() and x.max() <= 1
