"""Attacking a run: a class-balanced test batch, and a transfer source that must read the same
images and name the same classes."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from herd_cls.analysis.run_attacks import balanced_test_batch, check_transfer_source
from herd_cls.data import DataInfo
from herd_cls.registry import HerdError


def fake_run(name, classes, size, chans=1):
    return SimpleNamespace(path=Path(name), info=DataInfo(len(classes), classes, chans, size))


def test_transfer_source_must_match_classes_and_image_shape():
    target = fake_run("target", ["a", "b"], 16)
    check_transfer_source(target, fake_run("same", ["a", "b"], 16))
    with pytest.raises(HerdError, match="--transfer-from other has classes \\['a', 'c'\\]"):
        check_transfer_source(target, fake_run("other", ["a", "c"], 16))
    with pytest.raises(HerdError, match="takes 1x32x32 images, this run 1x16x16"):
        check_transfer_source(target, fake_run("big", ["a", "b"], 32))


def test_balanced_test_batch_takes_the_first_images_of_every_class_in_split_order():
    x, y = torch.arange(10.0).view(10, 1, 1, 1), torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    run = SimpleNamespace(class_names=["a", "b", "c"], data=lambda split: TensorDataset(x, y))
    images, labels = balanced_test_batch(run, 6)  # 2 per class
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert images.flatten().tolist() == [0.0, 1.0, 4.0, 5.0, 7.0, 8.0]
