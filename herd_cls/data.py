"""Image data sets, offline by default: every set yields (x in [0, 1] of shape (C, H, W), label).

``digits``, ``shapes`` and ``templates`` need no files (:mod:`herd_cls.builtin_data`); the sets here
read them from ``root``: ``dsprites`` DeepMind's archive, ``mnist``, ``fashion-mnist`` and
``cifar10`` torchvision's files (downloading only when asked), ``imagefolder`` any class-per-folder
tree. :func:`create_datasets` splits each the same way every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from . import builtin_data
from .files import atomic_write
from .image_sets import SPLIT_SEED, ImageSet, ResizedImages, resize_images, subsample
from .registry import HerdError, Registry

DATASETS: Registry = Registry("data set")


@dataclass
class DataInfo:
    """What a model needs to know about its data."""

    num_classes: int
    class_names: list[str]
    in_chans: int
    image_size: int
    factor_names: list[str] = field(default_factory=list)


# helpers


def dataset_labels(ds: Dataset) -> np.ndarray:
    """Labels of a data set or split, without loading images where the base set keeps them."""
    if isinstance(ds, Subset):
        return dataset_labels(ds.dataset)[np.asarray(ds.indices, dtype=int)]
    base = ds.base if isinstance(ds, ResizedImages) else ds
    for attr in ("labels", "targets"):
        if hasattr(base, attr):
            return np.asarray(getattr(base, attr))
    return np.array([ds[i][1] for i in range(len(ds))])


def dataset_factors(ds: Dataset) -> dict[str, np.ndarray]:
    """The generative factors of a data set's images ({} for sets without recorded factors)."""
    if isinstance(ds, Subset):
        idx = np.asarray(ds.indices, dtype=int)
        return {k: v[idx] for k, v in dataset_factors(ds.dataset).items()}
    return dict(getattr(ds, "factors", {}))


def _stratified_split(labels: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Split indices into len(fractions) + 1 parts, each class in the same proportions."""
    from sklearn.model_selection import train_test_split

    parts, rest = [], np.arange(len(labels))
    remaining = 1.0
    for frac in fractions:
        size = frac / remaining
        try:
            keep, take = train_test_split(
                rest, test_size=size, stratify=labels[rest], random_state=seed
            )
        except ValueError:  # too few images per class to stratify: a plain random split
            keep, take = train_test_split(rest, test_size=size, random_state=seed)
        parts.append(np.sort(take))
        rest, remaining = keep, remaining - frac
    return [np.sort(rest)] + parts


# data sets

DATASETS.register("digits")(builtin_data.digits_set)
DATASETS.register("shapes")(builtin_data.shapes_set)
DATASETS.register("templates")(builtin_data.templates_set)


DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_SHAPES = ["square", "ellipse", "heart"]
DSPRITES_FACTORS = {
    "scale": 2,
    "orientation": 3,
    "pos_x": 4,
    "pos_y": 5,
}  # columns of latents_values


def _dsprites_subset(path: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(imgs, latents_values) of a fixed random subset of ``count`` images. Reading the archive
    decompresses all 737280 images (about 3 GB), so a proper subset is cached beside it; a cache
    older than the archive, or unreadable, is rebuilt, and a read-only folder just goes without
    one."""
    cache = path.with_name(f"{path.stem}.subset{count}-seed{SPLIT_SEED}.npz")
    if cache.is_file() and cache.stat().st_mtime >= path.stat().st_mtime:
        try:
            with np.load(cache, allow_pickle=False) as subset:
                return subset["imgs"], subset["latents_values"]
        except (OSError, KeyError, ValueError):
            pass
    with np.load(path, allow_pickle=False) as archive:
        values = archive["latents_values"]
        if count >= len(values):
            return archive["imgs"], values
        keep = np.sort(np.random.default_rng(SPLIT_SEED).permutation(len(values))[:count])
        imgs, values = archive["imgs"][keep], values[keep]

    try:
        atomic_write(cache, lambda f: np.savez_compressed(f, imgs=imgs, latents_values=values))
    except OSError:  # a read-only data folder: subsample again next time
        pass
    return imgs, values


@DATASETS.register("dsprites")
def _dsprites(root, download, image_size, num_samples, num_classes):
    """DeepMind's dSprites archive (Matthey et al. 2017) from ``root`` (the .npz or its folder): the
    class is the shape; scale, orientation and position are the recorded factors."""
    path = Path(root)
    path = path if path.is_file() else path / DSPRITES_FILE
    if not path.is_file():
        raise HerdError(
            f"dSprites archive not found at {path}; download {DSPRITES_FILE} from "
            "github.com/deepmind/dsprites-dataset and pass --data-root DIR holding it"
        )
    try:
        imgs, values = _dsprites_subset(path, num_samples or 20000)
    except (OSError, KeyError, ValueError) as err:
        raise HerdError(
            f"cannot read dSprites archive {path} ({err}); it needs arrays imgs and latents_values"
        ) from None
    images = torch.from_numpy(imgs.astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(values[:, 1].astype(np.int64) - 1)
    factors = {name: values[:, col].astype(np.float32) for name, col in DSPRITES_FACTORS.items()}
    # orientation as a fraction of each shape's symmetry period (square 90°, ellipse 180°, heart
    # 360°), so that images which look the same have the same value
    period = np.array([np.pi / 2, np.pi, 2 * np.pi], dtype=np.float32)[labels.numpy()]
    factors["orientation"] = np.mod(factors["orientation"], period) / period
    return (
        {"all": ImageSet(resize_images(images, image_size), labels, factors)},
        list(DSPRITES_SHAPES),
        1,
    )


def _torchvision(cls_name: str, folder: str, in_chans: int):
    def load(root, download, image_size, num_samples, num_classes):
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        try:
            train = cls(root, train=True, download=download)
            test = cls(root, train=False, download=download)
        except RuntimeError as err:
            hint = "add --download" if not download else "check the network or the files"
            raise HerdError(
                f"{cls_name} not found under {Path(root) / folder} ({err}); pass --data-root DIR "
                f"holding it or {hint}"
            ) from None
        splits = {
            "train": subsample(ResizedImages(train, image_size), num_samples, SPLIT_SEED),
            "test": ResizedImages(test, image_size),
        }
        return splits, [str(c) for c in train.classes], in_chans

    return load


DATASETS.register("mnist")(_torchvision("MNIST", "MNIST", 1))
DATASETS.register("fashion-mnist")(_torchvision("FashionMNIST", "FashionMNIST", 1))
DATASETS.register("cifar10")(_torchvision("CIFAR10", "cifar-10-batches-py", 3))


@DATASETS.register("imagefolder")
def _imagefolder(root, download, image_size, num_samples, num_classes):
    from torchvision.datasets import ImageFolder

    if not Path(root).is_dir():
        raise HerdError(
            f"image folder {root} does not exist; pass --data-root DIR with one sub-folder per "
            f"class"
        )
    try:
        base = ImageFolder(root)
    except (FileNotFoundError, RuntimeError) as err:
        raise HerdError(f"cannot read image folder {root}: {err}") from None
    ds = subsample(ResizedImages(base, image_size), num_samples, SPLIT_SEED)
    return {"all": ds}, list(base.classes), 3


# public API

DEFAULT_IMAGE_SIZE = {
    "digits": 32,
    "shapes": 32,
    "templates": 32,
    "mnist": 32,
    "fashion-mnist": 32,
    "cifar10": 32,
    "dsprites": 32,
}


def create_datasets(
    name: str,
    root: str | Path = "data",
    download: bool = False,
    image_size: int | None = None,
    num_samples: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    num_classes: int | None = None,
) -> tuple[dict[str, Dataset], DataInfo]:
    """Build the train/val/test splits of a data set; the split is stratified and deterministic.

    Sets without an official test split are split into train/val/test; the others keep their test
    split and carve val out of train. ``num_classes``: how many classes a generated set (templates)
    has; for the others, how many are expected (a mismatch is one HerdError).
    """
    factory = DATASETS.get(name)
    size = image_size or DEFAULT_IMAGE_SIZE.get(name, 64)
    parts, class_names, in_chans = factory(str(root), download, size, num_samples, num_classes)
    if "all" in parts:
        ds = parts["all"]
        train, val, test = _stratified_split(
            dataset_labels(ds), [val_fraction, test_fraction], SPLIT_SEED
        )
        splits = {
            "train": Subset(ds, train.tolist()),
            "val": Subset(ds, val.tolist()),
            "test": Subset(ds, test.tolist()),
        }
    else:
        train, val = _stratified_split(dataset_labels(parts["train"]), [val_fraction], SPLIT_SEED)
        splits = {
            "train": Subset(parts["train"], train.tolist()),
            "val": Subset(parts["train"], val.tolist()),
            "test": parts["test"],
        }
    if num_classes is not None and num_classes != len(class_names):
        raise HerdError(
            f"--num-classes {num_classes} does not match the {len(class_names)} classes of {name}; "
            "drop --num-classes or choose the matching data set"
        )
    names = list(dataset_factors(parts.get("all", parts.get("train"))))
    return splits, DataInfo(len(class_names), class_names, in_chans, size, names)


def channel_stats(ds: Dataset, limit: int = 2000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (at most ``limit``) training images."""
    x = torch.stack([ds[i][0] for i in range(min(limit, len(ds)))])
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).clamp_min(1e-3).tolist()
