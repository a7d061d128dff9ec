"""Image data sets, offline by default: every set yields (x in [0, 1] of shape (C, H, W), label).

``digits`` (scikit-learn's bundled 8x8 digits) and ``shapes`` (dSprites-like, generated with its
factors) need no files; ``mnist``, ``fashion-mnist`` and ``cifar10`` read torchvision's files
from ``root`` (downloading only when asked); ``imagefolder`` reads any class-per-folder tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from .files import atomic_write
from .registry import HerdError, Registry

DATASETS: Registry = Registry("data set")
SPLIT_SEED = 0  # the split never depends on the training seed, so seeds compare on one test set


@dataclass
class DataInfo:
    """What a model needs to know about its data."""

    num_classes: int
    class_names: list[str]
    in_chans: int
    image_size: int
    factor_names: list[str] = field(default_factory=list)


class ImageSet(Dataset):
    """In-memory images (N, C, H, W) in [0, 1], labels (N,) and optional factors {name: (N,)}."""

    def __init__(
        self, images: Tensor, labels: Tensor, factors: dict[str, np.ndarray] | None = None
    ):
        self.images, self.labels = images, labels
        self.factors = factors or {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


class _Resized(Dataset):
    """A torchvision data set of PIL images, as tensors in [0, 1] at ``size`` x ``size``."""

    def __init__(self, base, size: int):
        from torchvision.transforms import v2

        self.base = base
        self.transform = v2.Compose(
            [
                v2.ToImage(),
                v2.Resize((size, size), antialias=True),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        img, label = self.base[i]
        return self.transform(img), int(label)


# helpers


def _resize(images: Tensor, size: int) -> Tensor:
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(
        0, 1
    )


def dataset_labels(ds: Dataset) -> np.ndarray:
    """Labels of a data set or split, without loading images where the base set keeps them."""
    if isinstance(ds, Subset):
        return dataset_labels(ds.dataset)[np.asarray(ds.indices, dtype=int)]
    base = ds.base if isinstance(ds, _Resized) else ds
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


def _subsample(ds: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(ds):
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return Subset(ds, idx.tolist())


# data sets


@DATASETS.register("digits")
def _digits(root, download, image_size, num_samples, num_classes):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    ds = ImageSet(_resize(images, image_size), torch.tensor(bunch.target))
    return {"all": _subsample(ds, num_samples, SPLIT_SEED)}, [str(c) for c in bunch.target_names], 1


SHAPE_NAMES = ["square", "ellipse", "heart"]
SHAPE_FACTORS = ["scale", "orientation", "pos_x", "pos_y"]
# dSprites' value grids (Matthey et al. 2017): 6 scales, 40 orientations, 32 x 32 positions
SHAPE_GRID = {
    "scale": np.linspace(0.5, 1.0, 6),
    "orientation": np.linspace(0, 2 * np.pi, 40),
    "pos_x": np.linspace(0, 1, 32),
    "pos_y": np.linspace(0, 1, 32),
}
SHAPE_PERIOD = np.array([np.pi / 2, np.pi, 2 * np.pi])  # each shape's rotational symmetry
RENDER_CHUNK = 2048


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether shape-frame points (u, v), unit size, lie inside ``shape``."""
    if shape == 0:
        return np.maximum(abs(u), abs(v)) <= 0.75
    if shape == 1:
        return u**2 + (v / 0.5) ** 2 <= 1.0
    h, w = 1.15 * v + 0.25, 1.15 * u  # the heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, centred
    return (w**2 + h**2 - 1) ** 3 <= w**2 * h**3


def make_shapes(
    n: int, image_size: int = 32, seed: int = 0
) -> tuple[Tensor, Tensor, dict[str, np.ndarray]]:
    """dSprites-like shapes: square, ellipse and heart (the class), each factor drawn uniformly from
    dSprites' grid: scale (6 values in [0.5, 1]), orientation (40 in [0, 2 pi]), pos_x and pos_y (32
    each in [0, 1]). Rendered at 2x and average-pooled, so edges are grey.

    ``orientation`` is recorded as a fraction of the shape's symmetry period (square 90 degrees,
    ellipse 180, heart 360), so that images which look the same have the same value, as the
    ``dsprites`` loader does.

    Returns:
        images (n, 1, S, S) in [0, 1], labels (n,), factors {name: (n,) float32}.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(SHAPE_NAMES), n)
    f = {k: grid[rng.integers(0, len(grid), n)] for k, grid in SHAPE_GRID.items()}
    s2 = 2 * image_size
    grid = (np.arange(s2, dtype=np.float32) + 0.5) / s2 * 2 - 1
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    inside = np.zeros((n, s2, s2), dtype=bool)
    size = 0.34 * f["scale"]  # half-extent in image units of [-1, 1]
    cx, cy = (f["pos_x"] * 2 - 1) * 0.62, (f["pos_y"] * 2 - 1) * 0.62
    for lo in range(0, n, RENDER_CHUNK):
        for c in range(len(SHAPE_NAMES)):
            i = lo + np.flatnonzero(labels[lo : lo + RENDER_CHUNK] == c)
            dx = (gx[None] - cx[i, None, None]).astype(np.float32)
            dy = (gy[None] - cy[i, None, None]).astype(np.float32)
            cos = np.cos(f["orientation"][i]).astype(np.float32)[:, None, None]
            sin = np.sin(f["orientation"][i]).astype(np.float32)[:, None, None]
            s = size[i, None, None].astype(np.float32)
            inside[i] = _inside(c, (cos * dx + sin * dy) / s, (-sin * dx + cos * dy) / s)
    images = F.avg_pool2d(torch.from_numpy(inside).float().unsqueeze(1), 2)
    f["orientation"] = np.mod(f["orientation"], SHAPE_PERIOD[labels]) / SHAPE_PERIOD[labels]
    f["orientation"] = np.where(np.isclose(f["orientation"], 1.0), 0.0, f["orientation"])
    return images, torch.from_numpy(labels), {k: f[k].astype(np.float32) for k in SHAPE_FACTORS}


@DATASETS.register("shapes")
def _shapes(root, download, image_size, num_samples, num_classes):
    images, labels, factors = make_shapes(
        num_samples or SHAPES_DEFAULT_SAMPLES, image_size, seed=SPLIT_SEED
    )
    return {"all": ImageSet(images, labels, factors)}, list(SHAPE_NAMES), 1


SHAPES_DEFAULT_SAMPLES = 20000


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
    """DeepMind's dSprites archive (Matthey et al. 2017) from ``root`` (the .npz or its folder):
    the class is the shape; scale, orientation and position are the recorded factors."""
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
    # 360°),
    # so that images which look the same have the same value
    period = np.array([np.pi / 2, np.pi, 2 * np.pi], dtype=np.float32)[labels.numpy()]
    factors["orientation"] = np.mod(factors["orientation"], period) / period
    return {"all": ImageSet(_resize(images, image_size), labels, factors)}, list(DSPRITES_SHAPES), 1


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
                f"{cls_name} not found under {Path(root) / folder} ({err}); "
                f"pass --data-root DIR holding it or {hint}"
            ) from None
        splits = {
            "train": _subsample(_Resized(train, image_size), num_samples, SPLIT_SEED),
            "test": _Resized(test, image_size),
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
    ds = _subsample(_Resized(base, image_size), num_samples, SPLIT_SEED)
    return {"all": ds}, list(base.classes), 3


TEMPLATE_CLASSES, TEMPLATE_IMAGES_PER_CLASS = 100, 60


def make_templates(
    num_classes: int, per_class: int, image_size: int = 32, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """A many-class image set that needs no download: each class a random smooth colour template (8
    x 8 noise upsampled), each image its class's template shifted by up to 1/8 of the side (wrapping
    around), plus pixel noise. Returns images (K * per_class, 3, S, S) in [0, 1] and labels,
    class-major."""
    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(
        torch.rand(num_classes, 3, 8, 8, generator=g),
        size=image_size,
        mode="bilinear",
        align_corners=False,
    )
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    shifts = torch.randint(-image_size // 8, image_size // 8 + 1, (len(labels), 2), generator=g)
    images = torch.stack(
        [templates[c].roll(tuple(shift.tolist()), (1, 2)) for c, shift in zip(labels, shifts)]
    )
    return (images + 0.15 * torch.randn(images.shape, generator=g)).clamp(0, 1), labels


@DATASETS.register("templates")
def _templates(root, download, image_size, num_samples, num_classes):
    k = num_classes or TEMPLATE_CLASSES
    per_class = max(1, (num_samples or k * TEMPLATE_IMAGES_PER_CLASS) // k)
    images, labels = make_templates(k, per_class, image_size, seed=SPLIT_SEED)
    return {"all": ImageSet(images, labels)}, [f"template {c}" for c in range(k)], 3


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

    Sets without an official test split are split into train/val/test; the others keep their
    test split and carve val out of train. ``num_classes``: how many classes a generated set
    (templates) has; for the others, how many are expected (a mismatch is one HerdError).
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
            f"drop "
            "--num-classes or choose the matching data set"
        )
    names = list(dataset_factors(parts.get("all", parts.get("train"))))
    return splits, DataInfo(len(class_names), class_names, in_chans, size, names)


def channel_stats(ds: Dataset, limit: int = 2000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (at most ``limit``) training images."""
    x = torch.stack([ds[i][0] for i in range(min(limit, len(ds)))])
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).clamp_min(1e-3).tolist()
