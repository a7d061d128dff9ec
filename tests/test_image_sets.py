"""The pieces the data sets are made of: in-memory sets, PIL images resized to tensors, resizing and
a fixed subsample."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Subset

import pytest

from herd_cls.image_sets import ImageSet, ResizedImages, resize_images, subsample
from herd_cls.registry import HerdError


def test_an_image_set_yields_images_and_integer_labels_and_keeps_its_factors():
    images, labels = torch.rand(4, 1, 6, 6), torch.tensor([2, 0, 1, 2])
    ds = ImageSet(images, labels, {"scale": np.arange(4.0)})
    x, y = ds[3]
    assert len(ds) == 4 and torch.equal(x, images[3]) and y == 2 and isinstance(y, int)
    assert list(ds.factors) == ["scale"] and ImageSet(images, labels).factors == {}


def test_resized_images_are_tensors_in_the_unit_range():
    pictures = [(Image.new("RGB", (10, 7), (255, 0, 128)), 1)]
    x, y = ResizedImages(pictures, 4)[0]
    assert x.shape == (3, 4, 4) and x.dtype == torch.float32 and y == 1
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, 0.0, 128 / 255]))


def test_resizing_keeps_images_of_the_size_and_the_unit_range():
    images = torch.rand(2, 1, 8, 8)
    assert resize_images(images, 8) is images
    larger = resize_images(images, 13)
    assert larger.shape == (2, 1, 13, 13) and 0 <= larger.min() and larger.max() <= 1


def test_a_subsample_is_fixed_by_its_seed_and_keeps_the_order():
    ds = ImageSet(torch.rand(20, 1, 2, 2), torch.arange(20) % 3)
    assert subsample(ds, None, 0) is ds and subsample(ds, 20, 0) is ds
    part = subsample(ds, 7, 0)
    assert isinstance(part, Subset) and len(part) == 7
    assert part.indices == sorted(part.indices) == subsample(ds, 7, 0).indices
    assert part.indices != subsample(ds, 7, 1).indices


def test_an_image_set_saved_as_a_folder_reads_back_as_torchvision_image_folder(tmp_path):
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import to_tensor

    from herd_cls.builtin_data import make_templates
    from herd_cls.image_sets import save_image_folder

    images, labels = make_templates(3, per_class=2, image_size=16)
    grey = images[:, :1]
    for saved, root in ((images, tmp_path / "rgb"), (grey, tmp_path / "grey")):
        folder = ImageFolder(save_image_folder(saved, labels, root))
        assert folder.classes == ["class0000", "class0001", "class0002"]
        assert sorted(folder.targets) == labels.tolist()
        for path, label in folder.samples:
            i = int(Path(path).stem)
            assert label == labels[i]
            read = to_tensor(folder.loader(path))[: saved.shape[1]]  # the loader reads RGB
            assert (read - saved[i]).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    with pytest.raises(HerdError, match="not empty"):
        save_image_folder(images, labels, tmp_path / "rgb")
