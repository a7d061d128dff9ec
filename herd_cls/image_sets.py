"""The pieces every data set is made of: in-memory image sets, torchvision's PIL images resized to
tensors, resizing and subsampling, the seed that fixes every split, and image sets written out as
class-per-folder PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from .registry import HerdError

SPLIT_SEED = 0  # the split never depends on the training seed, so seeds compare on one test set


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


class ResizedImages(Dataset):
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


def resize_images(images: Tensor, size: int) -> Tensor:
    """Images (N, C, H, W) at ``size`` x ``size``, bilinear, still in [0, 1]."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(
        0, 1
    )


def subsample(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """A fixed random ``n`` of ``ds``'s items, in their order (all of them when ``n`` is None)."""
    if n is None or n >= len(ds):
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return Subset(ds, idx.tolist())


def save_image_folder(images: Tensor, labels: Tensor, root: Path) -> Path:
    """Write images (N, C, H, W) in [0, 1] as 8-bit PNGs, root/class<label, 4 digits>/<index>.png:
    the layout ``--dataset imagefolder`` reads, into a new or empty ``root``. Returns ``root``."""
    from PIL import Image

    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise HerdError(f"{root} is not empty; write an image folder into a new or empty folder")
    pixels = (images.cpu() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    folders = {c: root / f"class{c:04d}" for c in set(labels.tolist())}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(pixels, labels.tolist())):
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
            folders[label] / f"{i}.png"
        )
    return root
