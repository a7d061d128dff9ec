"""What analyse() measures purity on: a prefix that spreads over the classes, and carriers mapped
back to the test images they came from."""

import pytest
import torch

from herd_cls.analysis.runs import carriers, round_robin
from herd_cls.purity import Purity


def test_round_robin_takes_every_classs_first_image_then_every_second():
    # class-major, as an image folder's test split
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    assert round_robin(labels).tolist() == [0, 3, 5, 1, 4, 6, 2, 7, 8]
    assert set(labels[round_robin(labels)[:3]].tolist()) == {0, 1, 2}


def test_carriers_name_the_test_images_they_came_from():
    """Purity measured on test images 4, 0, 2 (in that order): class 0's heaviest measured image,
    its second, is test image 0."""
    purity = Purity(
        torch.tensor([0.5, 0.5]),
        torch.tensor([0.9, 0.2, 0.7]),
        torch.tensor([1, 0, 0]),
        None,
        "exact",
        torch.tensor([1.0, 5.0, 2.0]),
    )
    x, logits = torch.arange(5.0).view(5, 1, 1, 1), torch.eye(5, 2)
    found = carriers(purity, x, logits, 0, k=1, measured=torch.tensor([4, 0, 2]))
    assert (
        found.images.flatten().tolist() == [0.0]
        and found.index == [0]
        and found.own_share == pytest.approx([0.2])
    )
