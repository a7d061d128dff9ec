"""A training run's state: :func:`setup` builds a :class:`Session` (data, model, regularizer and
optimiser) in a new run folder, or restores an interrupted run's from its checkpoint."""

from __future__ import annotations

import math
import random
import sys
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from . import distributed
from .config import Config, load_config, save_config
from .data import DataInfo, channel_stats
from .models import LatentModel
from .objective import Forward
from .registry import HerdError
from .regularizers import Regularizer, create_regularizer, reg_names, resolved_reg
from .run import CHECKPOINT, build, config_datasets, load_checkpoint, read_metrics, save_data_info


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HerdError(f"device {name} asked for but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise HerdError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Session:
    """Everything one training run holds between epochs (on each process, under torchrun)."""

    cfg: Config
    run_dir: Path
    device: torch.device
    ranks: distributed.Ranks
    model: LatentModel
    forward: nn.Module  # Forward(model), wrapped in DistributedDataParallel under torchrun
    reg: Regularizer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loaders: dict[str, DataLoader]
    shuffle: torch.Generator
    start_epoch: int = 0
    seconds: float = 0.0
    rows: list[dict] = field(default_factory=list)
    # why the decoder collapsed, from the first epoch it did
    collapse: list[str] = field(default_factory=list)

    @property
    def amp(self) -> torch.dtype | None:
        use = self.cfg.amp and self.device.type == "cuda"
        return getattr(torch, self.cfg.amp_dtype) if use else None


def _run_dir(cfg: Config, resume: str | None) -> Path:
    if resume:
        path = Path(resume)
        if not (path / CHECKPOINT).is_file():
            raise HerdError(
                f"nothing to resume at {path}: no {CHECKPOINT}; pass the folder of an interrupted "
                f"run"
            )
        return path
    # every rank takes rank 0's name: their clocks may tick over between them
    regs = "+".join(reg_names(cfg.reg))
    name = distributed.broadcast(
        cfg.name or f"{cfg.dataset}-{cfg.backbone}-{regs}-{datetime.now():%Y%m%d-%H%M%S}"
    )
    path = Path(cfg.out_dir) / name
    if path.exists():
        raise HerdError(f"run folder {path} already exists; pick another --name or --resume {path}")
    return path


def _device(cfg: Config, ranks: distributed.Ranks) -> torch.device:
    device = resolve_device(cfg.device)
    return (
        torch.device("cuda", ranks.local_rank)
        if ranks.enabled and device.type == "cuda"
        else device
    )


def _splits(cfg: Config) -> tuple[dict[str, Dataset], DataInfo, list[float], list[float]]:
    """The train/val/test splits of ``cfg``'s data set, what a model needs to know about it, and the
    training split's channel mean and std; config and data are checked to match on every process."""
    splits, info = config_datasets(cfg)
    distributed.check_same(repr(asdict(cfg)), "the config")
    distributed.check_same(repr((asdict(info), {k: len(v) for k, v in splits.items()})), "the data")
    mean, std = channel_stats(splits["train"])
    return splits, info, mean, std


def _regularizer(
    cfg: Config,
    model: LatentModel,
    train_size: int,
    ranks: distributed.Ranks,
    device: torch.device,
    resume: str | None,
) -> Regularizer:
    """``cfg``'s regularizer on ``device``; its warnings go to stderr once, when a run starts."""
    # under torchrun, penalties of the global batch: per-class sums all-reduced before the ratio
    reg = create_regularizer(
        cfg, model, train_size, distributed.all_reduce_sum if ranks.enabled else None
    ).to(device)
    for warning in reg.warnings(cfg) if ranks.main and not resume else []:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    return reg


def _forward(model: LatentModel, ranks: distributed.Ranks, device: torch.device) -> nn.Module:
    """Forward(model), wrapped in DistributedDataParallel under torchrun."""
    forward = Forward(model)
    if ranks.enabled:
        forward = nn.parallel.DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None
        )
    return forward


def _optimiser(
    cfg: Config, model: LatentModel, device: torch.device
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.amp.GradScaler]:
    """AdamW, its learning-rate schedule (cosine or constant over the epochs) and the gradient
    scaler (on for float16 mixed precision on CUDA only)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        if cfg.lr_schedule == "cosine"
        else torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    )
    scaler = torch.amp.GradScaler(
        device.type, enabled=cfg.amp and cfg.amp_dtype == "float16" and device.type == "cuda"
    )
    return optimizer, scheduler, scaler


def _loaders(
    cfg: Config, splits: dict, shuffle: torch.Generator, ranks: distributed.Ranks
) -> dict[str, DataLoader]:
    """Training batches (a shard per process under torchrun, reshuffled every epoch from the seed);
    every process evaluates the whole val and test splits, so they all hold the same metrics."""
    loaders = {}
    for split, ds in splits.items():
        train = split == "train"
        sampler = (
            DistributedSampler(
                ds, ranks.world, ranks.rank, shuffle=True, seed=cfg.seed, drop_last=True
            )
            if train and ranks.enabled
            else None
        )
        loaders[split] = DataLoader(
            ds,
            batch_size=cfg.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            generator=shuffle,
            num_workers=cfg.num_workers,
            drop_last=train and len(ds) > cfg.batch_size,
        )
    return loaders


def setup(cfg: Config, resume: str | None = None) -> Session:
    """Data, model, regularizer and optimiser for ``cfg``; a new run folder, or the state of
    ``resume``."""
    ranks = distributed.start(cfg.device)
    if resume:  # the run's own config; only a larger --epochs is taken from the command line
        saved = Path(resume) / "config.yaml"
        cfg = replace(load_config(saved) if saved.is_file() else cfg, epochs=cfg.epochs)
    run_dir = _run_dir(cfg, resume)
    device = _device(cfg, ranks)
    seed_everything(cfg.seed)
    splits, info, mean, std = _splits(cfg)
    cfg = replace(
        cfg,
        image_size=info.image_size,
        num_classes=info.num_classes,
        alpha_reg=cfg.reg_weight,
        penalty_samples=cfg.penalty_sample_count,
        reg=resolved_reg(cfg.reg),
    )
    shuffle = torch.Generator()
    loaders = _loaders(cfg, splits, shuffle, ranks)
    if cfg.steps is not None:  # a step budget fixes the epochs, which schedules and --resume see
        cfg = replace(cfg, epochs=math.ceil(cfg.steps / len(loaders["train"])))
    cfg, model = build(cfg, info, mean, std)
    model.to(
        device, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format
    )
    reg = _regularizer(cfg, model, len(splits["train"]), ranks, device, resume)
    forward = _forward(model, ranks, device)
    optimizer, scheduler, scaler = _optimiser(cfg, model, device)
    session = Session(
        cfg,
        run_dir,
        device,
        ranks,
        model,
        forward,
        reg,
        optimizer,
        scheduler,
        scaler,
        loaders,
        shuffle,
    )
    if resume:
        _restore(session)
    elif ranks.main:
        run_dir.mkdir(parents=True)
        save_config(cfg, run_dir / "config.yaml")
        save_data_info(run_dir, info, mean, std)
    distributed.barrier()
    return session


def _restore(s: Session) -> None:
    """Weights, optimiser, scheduler, regularizer state, RNG and metrics of the last finished
    epoch."""
    path = s.run_dir / CHECKPOINT
    state = load_checkpoint(path, s.device)
    try:
        s.model.load_state_dict(state["model"])
        s.optimizer.load_state_dict(state["optimizer"])
        s.scheduler.load_state_dict(state["scheduler"])
        s.reg.load_state_dict(state["regularizer"])
        torch.set_rng_state(state["rng"])
        s.start_epoch, s.seconds = state["epoch"] + 1, state["train_seconds"]
    except (KeyError, RuntimeError, ValueError, TypeError):
        raise HerdError(
            f"{path} does not hold this run's training state (config.yaml describes another model "
            "or regularizer); start a new run instead of --resume"
        ) from None
    s.rows = read_metrics(s.run_dir)
