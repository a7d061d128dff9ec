"""The class-block layout of a latent vector: which dims each class owns, and which are shared.

z has d = K * n + s dims. Class c owns the block B_c = [c*n, (c+1)*n); the last s dims are shared by
every class. Everything that needs block indices (HeRD, the block head, purity, analyses, reports,
benchmarks) reads them from one :class:`BlockLayout`, which a model owns and a run folder saves in
its config.

>>> layout = BlockLayout(num_classes=10, dims_per_class=2, shared_dims=2)
>>> layout.latent_dim, layout.block(3).tolist(), layout.shared.tolist()
(22, [6, 7], [20, 21])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from .registry import HerdError


@dataclass(frozen=True)
class BlockLayout:
    """K class blocks of ``dims_per_class`` dims each, then ``shared_dims`` shared dims."""

    num_classes: int
    dims_per_class: int
    shared_dims: int = 0

    def __post_init__(self):
        if self.num_classes < 2:
            raise HerdError(f"class blocks need at least 2 classes, got {self.num_classes}")
        if self.dims_per_class < 1 or self.shared_dims < 0:
            raise HerdError(
                f"a class block needs at least 1 dim and shared dims cannot be negative, got "
                f"{self.dims_per_class} per class and {self.shared_dims} shared"
            )

    @staticmethod
    def fits(num_classes: int, latent_dim: int, shared_dims: int = 0) -> bool:
        """Whether ``latent_dim - shared_dims`` splits into ``num_classes`` equal blocks."""
        free = latent_dim - shared_dims
        return (
            num_classes >= 2
            and shared_dims >= 0
            and free >= num_classes
            and free % num_classes == 0
        )

    @classmethod
    def split(cls, num_classes: int, latent_dim: int, shared_dims: int = 0) -> BlockLayout:
        """The layout of ``latent_dim`` dims: ``latent_dim - shared_dims`` split evenly over the
        classes."""
        if not cls.fits(num_classes, latent_dim, shared_dims):
            raise HerdError(
                f"latent_dim {latent_dim} minus shared_dims {shared_dims} does not split into "
                f"{num_classes} class blocks; use latent_dim = {num_classes} * dims_per_class + "
                f"shared_dims"
            )
        return cls(num_classes, (latent_dim - shared_dims) // num_classes, shared_dims)

    @property
    def latent_dim(self) -> int:
        return self.num_classes * self.dims_per_class + self.shared_dims

    @cached_property
    def masks(self) -> Tensor:
        """Boolean (K, d): row c marks the dims of B_c."""
        n, masks = (
            self.dims_per_class,
            torch.zeros(self.num_classes, self.latent_dim, dtype=torch.bool),
        )
        for c in range(self.num_classes):
            masks[c, c * n : (c + 1) * n] = True
        return masks

    def block(self, c: int) -> Tensor:
        """Indices (n,) of the dims class ``c`` owns."""
        if not 0 <= c < self.num_classes:
            raise HerdError(
                f"class {c} is out of range; valid classes are 0..{self.num_classes - 1}"
            )
        return torch.arange(c * self.dims_per_class, (c + 1) * self.dims_per_class)

    @property
    def shared(self) -> Tensor:
        """Indices (s,) of the shared dims."""
        return torch.arange(self.latent_dim - self.shared_dims, self.latent_dim)

    def head_index(self) -> Tensor:
        """(K, n + s): row c, the dims a block head's logit c reads: class c's block, then the
        shared dims."""
        own = torch.arange(self.num_classes * self.dims_per_class).view(
            self.num_classes, self.dims_per_class
        )
        return torch.cat([own, self.shared.expand(self.num_classes, self.shared_dims)], 1)

    def own(self, labels: Tensor) -> Tensor:
        """Boolean (B, d): each sample's own block, for labels (B,)."""
        return self.masks.to(labels.device)[labels]

    def own_pairs(self, labels: Tensor) -> Tensor:
        """Boolean (B, d, d): the Hessian entries inside each sample's own block B_y x B_y."""
        own = self.own(labels)
        return own.unsqueeze(2) & own.unsqueeze(1)

    def kind(self, dim: int, c: int) -> str:
        """'own' (in class c's block), 'shared' or 'other'."""
        if dim >= self.latent_dim - self.shared_dims:
            return "shared"
        return "own" if dim // self.dims_per_class == c else "other"

    def chance(self) -> float:
        """Block purity of curvature spread evenly over all d x d entries: (n / d)^2."""
        return (self.dims_per_class / self.latent_dim) ** 2
