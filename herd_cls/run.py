"""A run folder that rebuilds itself: config.yaml, data.json, model.safetensors, metrics, summary.

Every command starts from :func:`load_run`; the trainer writes the folder through the helpers here.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .config import Config, load_config
from .data import DataInfo, create_datasets
from .files import atomic_write
from .layout import BlockLayout
from .models import LatentModel, create_model
from .registry import HerdError
from .regularizers import regularizer_class

WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.pt"


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def point_latest(run_dir: Path) -> None:
    """Make ``<out_dir>/latest`` a relative symlink to ``run_dir``, replacing the old one
    atomically."""
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
            raise HerdError(
                f"--latent-dim {cfg.latent_dim} does not match the pre-logit width {num_features} "
                f"of {cfg.backbone}; drop --latent-dim"
            )
        d = num_features
        shared = cfg.shared_dims if cfg.shared_dims is not None else d % num_classes
    else:
        shared = cfg.shared_dims if cfg.shared_dims is not None else 0
        d = cfg.latent_dim or num_classes * cfg.dims_per_class + shared
    return replace(cfg, latent_dim=d, shared_dims=shared)


def build(
    cfg: Config, info: DataInfo, mean: list[float], std: list[float]
) -> tuple[Config, LatentModel]:
    """The model a config describes (its block layout in ``model.layout``); returns the config with
    its dims resolved."""
    # a bottleneck's size is known now; pre-logit dims wait for the backbone's width
    dims = resolve_dims(cfg, info.num_classes) if cfg.latent == "bottleneck" else cfg
    reg = regularizer_class(cfg.reg)
    model = create_model(
        cfg.backbone,
        num_classes=info.num_classes,
        in_chans=info.in_chans,
        image_size=info.image_size,
        latent=cfg.latent,
        latent_dim=dims.latent_dim,
        head=cfg.head,
        head_hidden=cfg.head_hidden,
        decoder=cfg.decoder,
        pretrained=cfg.pretrained,
        pretrained_file=cfg.pretrained_file,
        mean=mean,
        std=std,
        variational=reg.variational,
        shared_dims=dims.shared_dims,
        whitened=reg.whitened,
    )
    cfg = resolve_dims(cfg, info.num_classes, model.latent_dim)
    if model.layout is None:  # raises the error that names the fix
        BlockLayout.split(info.num_classes, cfg.latent_dim, cfg.shared_dims)
    return cfg, model


def _damaged(path: Path, what: str) -> HerdError:
    return HerdError(
        f"{path} is {what}; the run folder is damaged: retrain it, or restore the file from a "
        f"backup"
    )


def read_json_file(path: Path) -> Any:
    """A JSON file of a run folder; a missing or damaged one is one clear HerdError."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise _damaged(path, "missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise _damaged(path, "not readable JSON (truncated or corrupted?)") from None


def read_metrics(run_dir: Path) -> list[dict]:
    """The per-epoch rows of a run folder's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise _damaged(path, "missing or not readable JSON lines") from None


def load_weights(path: Path, device: str = "cpu") -> dict[str, Tensor]:
    """A safetensors file (tensors only: nothing in it can run code); damage is one clear
    HerdError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError):
        raise _damaged(
            path, "not a readable safetensors file (truncated, corrupted or another format?)"
        ) from None


def load_checkpoint(path: Path, device) -> dict:
    """checkpoint.pt with ``weights_only`` (no pickled code runs); damage is one clear HerdError."""
    import pickle

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError):
        raise _damaged(
            path, "not a readable checkpoint (truncated, corrupted or not written by herd-cls?)"
        ) from None


def config_datasets(cfg: Config) -> tuple[dict, DataInfo]:
    """The train/val/test splits of ``cfg``'s data set, and what a model needs to know about it."""
    return create_datasets(
        cfg.dataset,
        cfg.data_root,
        cfg.download,
        cfg.image_size,
        cfg.num_samples,
        num_classes=cfg.num_classes,
    )


@dataclass
class Run:
    """A trained run as a Python object: the model and its verbs (encode, classify, decode), its
    class blocks (``layout``), config, data, and what was measured on it."""

    path: Path
    config: Config
    info: DataInfo
    model: LatentModel
    summary: dict
    _splits: dict[str, Dataset] | None = field(default=None, repr=False)

    @property
    def layout(self) -> BlockLayout:
        """The class blocks of z: ``run.layout.block(3)``, ``run.layout.shared``."""
        return self.model.layout

    @property
    def class_names(self) -> list[str]:
        return self.info.class_names

    def encode(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) in [0, 1] -> z (B, latent_dim)."""
        return self.model.encode(x)

    def classify(self, z: Tensor) -> Tensor:
        """z (B, latent_dim) -> logits (B, K)."""
        return self.model.classify(z)

    @property
    def decode(self) -> nn.Module | None:
        """z -> images, or None for a run without a decoder."""
        return self.model.decode

    def classifier(self) -> nn.Module:
        """Images (B, C, H, W) in [0, 1] -> logits, normalisation inside: point any attack or
        attribution library at it. Its mode is left as it is (``load_run`` gives eval mode)."""
        return self.model

    def config_dict(self) -> dict:
        return asdict(self.config)

    def history(self) -> list[dict]:
        """The per-epoch metrics rows of metrics.jsonl."""
        return read_metrics(self.path)

    def robustness(self) -> dict | None:
        """The last ``herd-cls robustness`` result saved in the run folder, or None."""
        path = self.path / "robustness.json"
        return read_json_file(path) if path.is_file() else None

    def data(self, split: str = "test") -> Dataset:
        """The run's train/val/test split, rebuilt from its config (images in [0, 1], labels)."""
        if split not in ("train", "val", "test"):
            raise HerdError(f"unknown split {split!r}; choose one of: train, val, test")
        if self._splits is None:
            self._splits, _ = config_datasets(self.config)
        return self._splits[split]


def load_run(path: str | Path = "runs/latest", device: str = "cpu") -> Run:
    """Rebuild a finished run from its folder (``runs/latest`` by default), model in eval mode."""
    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / "summary.json").is_file():
        raise HerdError(
            f"no finished run at {path}; train one with `herd-cls train` or pass --run PATH"
        )
    cfg = load_config(path / "config.yaml")
    data = read_json_file(path / "data.json")
    try:
        info, mean, std = DataInfo(**data["info"]), data["mean"], data["std"]
    except (KeyError, TypeError):
        raise _damaged(path / "data.json", "missing the data set description") from None
    cfg, model = build(replace(cfg, pretrained=False, pretrained_file=None), info, mean, std)
    try:
        model.load_state_dict(load_weights(path / WEIGHTS, device))
    except RuntimeError:
        raise _damaged(
            path / WEIGHTS, "weights of another model than config.yaml describes"
        ) from None
    model.to(device).eval()
    return Run(path.resolve(), cfg, info, model, read_json_file(path / "summary.json"))


def save_data_info(path: Path, info: DataInfo, mean: list[float], std: list[float]) -> None:
    write_json(path / "data.json", {"info": asdict(info), "mean": mean, "std": std})
