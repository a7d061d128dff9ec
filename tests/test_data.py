import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from herd_cls.data import DATASETS, create_datasets, dataset_factors, dataset_labels
from herd_cls.registry import HerdError


def test_digits_split_is_deterministic_disjoint_and_stratified():
    splits, info = create_datasets("digits", image_size=16)
    again, _ = create_datasets("digits", image_size=16)
    assert info.num_classes == 10 and info.in_chans == 1 and info.class_names[3] == "3"
    idx = {k: set(v.indices) for k, v in splits.items()}
    assert idx == {k: set(v.indices) for k, v in again.items()}
    assert (
        not (idx["train"] & idx["test"])
        and not (idx["val"] & idx["test"])
        and not (idx["train"] & idx["val"])
    )
    assert sum(map(len, idx.values())) == 1797
    test_share = np.bincount(dataset_labels(splits["test"])) / np.bincount(
        dataset_labels(splits["train"])
    )
    assert test_share.max() - test_share.min() < 0.05
    x, y = splits["train"][0]
    assert x.shape == (1, 16, 16) and 0 <= x.min() and x.max() <= 1 and x.max() > 0.5


def test_shapes_split_keeps_factors_aligned():
    splits, info = create_datasets("shapes", num_samples=400, image_size=16)
    f, y = dataset_factors(splits["test"]), dataset_labels(splits["test"])
    assert info.factor_names == list(f) and len(f["scale"]) == len(y) == len(splits["test"])
    assert info.class_names == ["square", "ellipse", "heart"]


def _write_idx(path, array, magic):
    with gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb") as fh:
        fh.write(
            struct.pack(">I", magic)
            + b"".join(struct.pack(">I", s) for s in array.shape)
            + array.tobytes()
        )


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_idx_loaders_on_written_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        _write_idx(
            raw / f"{prefix}-images-idx3-ubyte",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            2051,
        )
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8), 2049)
    splits, info = create_datasets(name, root=tmp_path, image_size=16)
    assert (
        info.num_classes == 10
        and len(splits["test"]) == 20
        and len(splits["train"]) + len(splits["val"]) == 40
    )
    x, y = splits["test"][3]
    assert (
        x.shape == (1, 16, 16)
        and x.dtype == torch.float32
        and 0 <= x.min() <= x.max() <= 1
        and y == 3
    )


def test_cifar10_loader_on_written_batches(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 10) for i in range(1, 6)] + [("test_batch", 10)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(10))}
        (root / name).write_bytes(pickle.dumps(batch))
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    # the real files' checksums cannot match written ones; everything else is torchvision's own code
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *args, **kwargs: True)
    splits, info = create_datasets("cifar10", root=tmp_path, image_size=8)
    assert info.in_chans == 3 and info.class_names[2] == "c2"
    assert len(splits["train"]) + len(splits["val"]) == 50 and splits["test"][0][0].shape == (
        3,
        8,
        8,
    )


def test_imagefolder_on_written_pngs(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(np.full((12, 10, 3), 25 * i, dtype=np.uint8)).save(
                tmp_path / cls / f"{i}.png"
            )
    splits, info = create_datasets("imagefolder", root=tmp_path, image_size=8)
    assert info.class_names == ["cat", "dog"] and info.in_chans == 3
    assert sum(len(s) for s in splits.values()) == 20 and splits["train"][0][0].shape == (3, 8, 8)


def test_missing_data_root_says_what_to_do(tmp_path):
    with pytest.raises(HerdError, match="--download"):
        create_datasets("mnist", root=tmp_path / "nowhere")
    with pytest.raises(HerdError, match="does not exist"):
        create_datasets("imagefolder", root=tmp_path / "nowhere")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(HerdError) as err:
        create_datasets("imagenet")
    for name in DATASETS.names():
        assert name in str(err.value)


def test_dsprites_loader_on_a_written_archive(tmp_path):
    rng = np.random.default_rng(0)
    n = 90
    values = np.zeros((n, 6))
    values[:, 1] = np.arange(n) % 3 + 1  # shape 1..3
    values[:, 2:] = rng.uniform(size=(n, 4))
    values[:, 3] = rng.uniform(0, 2 * np.pi, n)  # orientation in radians
    imgs = (rng.uniform(size=(n, 64, 64)) > 0.5).astype(np.uint8)
    np.savez_compressed(
        tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
        imgs=imgs,
        latents_values=values,
        latents_classes=np.zeros((n, 6), dtype=np.int64),
    )
    splits, info = create_datasets("dsprites", root=tmp_path, image_size=16)
    assert info.class_names == ["square", "ellipse", "heart"] and info.image_size == 16
    assert info.factor_names == ["scale", "orientation", "pos_x", "pos_y"]
    test = splits["test"]
    idx = np.asarray(test.indices)
    assert np.allclose(dataset_factors(test)["pos_y"], values[idx, 5])
    period = np.array([np.pi / 2, np.pi, 2 * np.pi])[(values[idx, 1] - 1).astype(int)]
    assert np.allclose(
        dataset_factors(test)["orientation"], np.mod(values[idx, 3], period) / period, atol=1e-6
    )
    assert (dataset_labels(test) == values[idx, 1] - 1).all()
    x, _ = test[0]
    assert x.shape == (1, 16, 16) and 0 <= x.min() and x.max() <= 1


def test_dsprites_subset_is_cached_beside_the_archive_and_rebuilt_when_older(tmp_path):
    import os

    n = 30
    values = np.zeros((n, 6))
    values[:, 1] = np.arange(n) % 3 + 1
    imgs = np.ones((n, 64, 64), dtype=np.uint8)
    archive = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    np.savez_compressed(archive, imgs=imgs, latents_values=values)
    first, _ = create_datasets("dsprites", root=tmp_path, image_size=16, num_samples=24)
    cache = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.subset24-seed0.npz"
    umask = os.umask(0)
    os.umask(umask)
    assert cache.stat().st_mode & 0o777 == 0o666 & ~umask  # a plain file's mode, not mkstemp's 0600
    with np.load(cache) as subset:
        assert subset["imgs"].shape == (24, 64, 64)
        np.savez(cache, imgs=np.zeros_like(subset["imgs"]), latents_values=subset["latents_values"])
    cached, _ = create_datasets("dsprites", root=tmp_path, image_size=16, num_samples=24)
    assert cached["test"][0][0].max() == 0  # read from the cache, not the archive
    os.utime(archive, (cache.stat().st_mtime + 10,) * 2)  # a newer archive invalidates the cache
    rebuilt, _ = create_datasets("dsprites", root=tmp_path, image_size=16, num_samples=24)
    assert rebuilt["test"][0][0].min() == 1
    cache.write_bytes(b"not an npz")  # a broken cache falls back to the archive
    os.utime(cache, (archive.stat().st_mtime + 10,) * 2)
    assert (
        create_datasets("dsprites", root=tmp_path, image_size=16, num_samples=24)[0]["test"][0][
            0
        ].min()
        == 1
    )
    create_datasets("dsprites", root=tmp_path, image_size=16)  # the whole archive: nothing to cache
    assert sorted(p.name for p in tmp_path.glob("*.subset*")) == [cache.name]


def test_dsprites_without_the_archive_says_where_to_get_it(tmp_path):
    with pytest.raises(HerdError, match="dSprites archive not found.*--data-root"):
        create_datasets("dsprites", root=tmp_path)


def test_templates_generate_any_number_of_classes_offline_and_reproducibly():
    """--dataset templates: num_classes classes of num_samples / num_classes images, the same on
    every build; each class's images are its template shifted plus noise, so the class mean of the
    training images tells the test images apart (nearest class mean far above chance)."""
    splits, info = create_datasets("templates", image_size=16, num_samples=7 * 20, num_classes=7)
    again, _ = create_datasets("templates", image_size=16, num_samples=7 * 20, num_classes=7)
    assert (
        info.num_classes == 7 and info.in_chans == 3 and sum(len(s) for s in splits.values()) == 140
    )
    x, y = map(torch.stack, zip(*[(img, torch.tensor(label)) for img, label in splits["train"]]))
    assert torch.equal(x, torch.stack([img for img, _ in again["train"]]))
    assert x.min() >= 0 and x.max() <= 1 and x.shape[1:] == (3, 16, 16)
    means = torch.stack([x[y == c].mean(0) for c in range(7)]).flatten(1)
    tx, ty = map(torch.stack, zip(*[(img, torch.tensor(label)) for img, label in splits["test"]]))
    predicted = torch.cdist(tx.flatten(1), means).argmin(1)
    assert (predicted == ty).float().mean() > 0.8
    with pytest.raises(HerdError, match="--num-classes 3 does not match the 10 classes of digits"):
        create_datasets("digits", num_classes=3)
