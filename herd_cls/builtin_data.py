"""The data sets that need no files: ``digits`` (scikit-learn's bundled 8x8 digits), ``shapes``
(dSprites-like, generated with its factors) and ``templates`` (generated, any number of classes).
Each factory returns ({"all": data set}, class names, channels); :mod:`herd_cls.data` registers them
and splits them."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .image_sets import SPLIT_SEED, ImageSet, resize_images, subsample


def digits_set(root, download, image_size, num_samples, num_classes):
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    ds = ImageSet(resize_images(images, image_size), torch.tensor(bunch.target))
    return {"all": subsample(ds, num_samples, SPLIT_SEED)}, [str(c) for c in bunch.target_names], 1


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
SHAPES_DEFAULT_SAMPLES = 20000


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


def shapes_set(root, download, image_size, num_samples, num_classes):
    """dSprites-like shapes from :func:`make_shapes`, with their factors."""
    images, labels, factors = make_shapes(
        num_samples or SHAPES_DEFAULT_SAMPLES, image_size, seed=SPLIT_SEED
    )
    return {"all": ImageSet(images, labels, factors)}, list(SHAPE_NAMES), 1


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


def templates_set(root, download, image_size, num_samples, num_classes):
    """``num_classes`` colour templates (100 unless given) from :func:`make_templates`."""
    k = num_classes or TEMPLATE_CLASSES
    per_class = max(1, (num_samples or k * TEMPLATE_IMAGES_PER_CLASS) // k)
    images, labels = make_templates(k, per_class, image_size, seed=SPLIT_SEED)
    return {"all": ImageSet(images, labels)}, [f"template {c}" for c in range(k)], 3
