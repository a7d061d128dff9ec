"""A run folder that rebuilds itself: config.yaml, data.json, model.safetensors, metrics, summary.

Every command starts from :func:`load_run`; the trainer writes the folder through the helpers here.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torch.utils.data import Dataset

from .config import VAE_REGS, Config, load_config
from .data import DataInfo, create_datasets
from .files import atomic_write
from .models import LatentModel, create_model
from .registry import HerdError
from .regularizer import HeRD, sum_losses

WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.pt"


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def point_latest(run_dir: Path) -> None:
    """Make ``<out_dir>/latest`` a relative symlink to ``run_dir``, replacing the old one atomically."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, link)


def resolve_dims(cfg: Config, num_classes: int, num_features: int | None = None) -> Config:
    """Fill in ``latent_dim`` and ``shared_dims`` (pre-logits: the backbone's width decides)."""
    if cfg.latent == "pre-logits":
        if cfg.latent_dim is not None and cfg.latent_dim != num_features:
            raise HerdError(f"--latent-dim {cfg.latent_dim} does not match the pre-logit width {num_features} "
                            f"of {cfg.backbone}; drop --latent-dim")
        d = num_features
        shared = cfg.shared_dims if cfg.shared_dims is not None else d % num_classes
    else:
        shared = cfg.shared_dims if cfg.shared_dims is not None else 0
        d = cfg.latent_dim or num_classes * cfg.dims_per_class + shared
    return replace(cfg, latent_dim=d, shared_dims=shared)


def build(cfg: Config, info: DataInfo, mean: list[float], std: list[float]) -> tuple[Config, LatentModel, HeRD]:
    """The model and HeRD module a config describes; returns the config with its dims resolved."""
    # a bottleneck's size is known now; pre-logit dims wait for the backbone's width
    dims = resolve_dims(cfg, info.num_classes) if cfg.latent == "bottleneck" else cfg
    model = create_model(cfg.backbone, info.num_classes, info.in_chans, info.image_size, cfg.latent,
                         dims.latent_dim, cfg.head, cfg.head_hidden, cfg.decoder,
                         cfg.pretrained, cfg.pretrained_file, mean, std, variational=cfg.reg in VAE_REGS,
                         shared_dims=dims.shared_dims)
    cfg = resolve_dims(cfg, info.num_classes, model.latent_dim)
    herd = HeRD(info.num_classes, cfg.latent_dim, mode="universal" if cfg.reg == "universal" else "class",
                shared_dims=cfg.shared_dims, alpha_off=cfg.alpha_off, alpha_diag=cfg.alpha_diag,
                variant=cfg.variant, probes=cfg.probes, method=cfg.hessian_method)
    return cfg, model, herd


def hessian_target(model: LatentModel, cfg: Config, x: Tensor, y: Tensor):
    """(head, target, loss) whose latent Hessian HeRD shapes, by ``cfg.wrt``."""
    if cfg.wrt == "classifier":
        return model.classify, y, "ce"
    if cfg.wrt == "autoencoder":
        return model.decode, x, cfg.recon_loss
    head, loss = sum_losses([model.classify, model.decode], ["ce", cfg.recon_loss])
    return head, (y, x), loss


@dataclass
class Run:
    """A trained run as a Python object: model, its callables, HeRD blocks, config and data."""

    path: Path
    config: Config
    info: DataInfo
    model: LatentModel
    herd: HeRD
    summary: dict
    _splits: dict[str, Dataset] | None = field(default=None, repr=False)

    @property
    def class_names(self) -> list[str]:
        return self.info.class_names

    def encode(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) in [0, 1] -> z (B, latent_dim)."""
        return self.model.encode(x)

    def head(self, z: Tensor) -> Tensor:
        """z (B, latent_dim) -> logits (B, K)."""
        return self.model.classify(z)

    @property
    def decode(self) -> nn.Module | None:
        """z -> images, or None for a run without a decoder."""
        return self.model.decode

    @property
    def classifier(self) -> nn.Module:
        """Images (B, C, H, W) in [0, 1] -> logits, in eval mode (normalisation inside): point any
        attack or attribution library at it."""
        return self.model.eval()

    def data(self, split: str = "test") -> Dataset:
        """The run's train/val/test split, rebuilt from its config (images in [0, 1], labels)."""
        if split not in ("train", "val", "test"):
            raise HerdError(f"unknown split {split!r}; choose one of: train, val, test")
        if self._splits is None:
            cfg = self.config
            self._splits, _ = create_datasets(cfg.dataset, cfg.data_root, cfg.download, cfg.image_size,
                                              cfg.num_samples)
        return self._splits[split]


def load_run(path: str | Path = "runs/latest", device: str = "cpu") -> Run:
    """Rebuild a finished run from its folder (``runs/latest`` by default), model in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / "summary.json").is_file():
        raise HerdError(f"no finished run at {path}; train one with `herd-cls train` or pass --run PATH")
    cfg = load_config(path / "config.yaml")
    data = json.loads((path / "data.json").read_text())
    info = DataInfo(**data["info"])
    cfg, model, herd = build(replace(cfg, pretrained=False, pretrained_file=None), info, data["mean"], data["std"])
    model.load_state_dict(load_file(path / WEIGHTS, device=device))
    model.to(device).eval()
    herd.to(device)
    return Run(path.resolve(), cfg, info, model, herd, json.loads((path / "summary.json").read_text()))


def save_data_info(path: Path, info: DataInfo, mean: list[float], std: list[float]) -> None:
    write_json(path / "data.json", {"info": asdict(info), "mean": mean, "std": std})

