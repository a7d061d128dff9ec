"""Training: task losses + the regularizer's term, per-epoch metrics, atomic checkpoints, a run
folder.

``train(cfg)`` reads like the loop it is: :func:`setup` builds a :class:`Session`,
:func:`train_epoch` runs one epoch, :func:`save_checkpoint` writes what ``--resume`` needs,
:func:`finish` exports.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from . import distributed
from .config import Config, load_config, save_config
from .curvature import AUTO_EXACT_MAX_DIM, has_closed_form
from .data import channel_stats, create_datasets
from .diagnostics import check_collapse, decoder_diagnostics, decoder_probe
from .files import atomic_write
from .models import LatentModel
from .purity import measure_purity
from .registry import HerdError
from .objective import Forward, batch_losses
from .regularizers import Regularizer, create_regularizer, reg_names, resolved_reg
from .run import (
    CHECKPOINT,
    WEIGHTS,
    build,
    load_checkpoint,
    point_latest,
    read_metrics,
    save_data_info,
    write_json,
)

EVAL_HESSIAN_SAMPLES = 512  # Hessians for block purity are measured on at most this many samples
# exact Hessians cost d products per image (none for a block head's closed form): a decoder or wide
# latent measures fewer
VAL_DECODER_HESSIAN_SAMPLES = 128
WIDE_HESSIAN_SAMPLES = {"val": 32, "test": 256}


def hessian_samples(model: LatentModel, cfg: Config, split: str) -> int:
    """How many images of ``split`` ("val" or "test") purity is measured on."""
    if model.latent_dim > AUTO_EXACT_MAX_DIM and not (
        cfg.wrt == "classifier" and has_closed_form(model.classify, "ce")
    ):
        return WIDE_HESSIAN_SAMPLES[split]
    return (
        EVAL_HESSIAN_SAMPLES
        if split == "test" or cfg.wrt == "classifier"
        else VAL_DECODER_HESSIAN_SAMPLES
    )


# helpers


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


@torch.no_grad()
def evaluate(
    model: LatentModel,
    cfg: Config,
    loader: DataLoader,
    device: torch.device,
    hessian_samples: int = EVAL_HESSIAN_SAMPLES,
) -> dict:
    """Loss, accuracy and reconstruction error on ``loader``, and block purity on its first
    ``hessian_samples`` images (see :mod:`herd_cls.purity`)."""
    model.eval()
    sums = {"loss": 0.0, "ce": 0.0, "recon": 0.0, "correct": 0.0}
    n = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = batch_losses(model, cfg, x, y)
        n += len(y)
        for k in ("loss", "ce", "recon"):
            if out[k] is not None:
                sums[k] += float(out[k]) * len(y)
        sums["correct"] += float(out["correct"])
    with torch.enable_grad():
        purity = measure_purity(
            model, loader, model.layout, cfg.wrt, cfg.recon_loss, max_samples=hessian_samples
        )
    return {
        "loss": sums["loss"] / n,
        "accuracy": sums["correct"] / n,
        "ce": sums["ce"] / n,
        "recon": sums["recon"] / n if model.decode else None,
        **purity.summary(),
    }


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    atomic_write(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    table = io.StringIO(newline="")
    w = csv.DictWriter(
        table,
        [k for k in rows[0] if not isinstance(rows[0][k], (list, str))],
        extrasaction="ignore",
    )
    w.writeheader()
    w.writerows(rows)
    atomic_write(run_dir / "metrics.csv", table.getvalue())


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


# the loop


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


def _device(cfg: Config, ranks: distributed.Ranks) -> torch.device:
    device = resolve_device(cfg.device)
    return (
        torch.device("cuda", ranks.local_rank)
        if ranks.enabled and device.type == "cuda"
        else device
    )


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
    splits, info = create_datasets(
        cfg.dataset,
        cfg.data_root,
        cfg.download,
        cfg.image_size,
        cfg.num_samples,
        num_classes=cfg.num_classes,
    )
    distributed.check_same(repr(asdict(cfg)), "the config")
    distributed.check_same(repr((asdict(info), {k: len(v) for k, v in splits.items()})), "the data")
    mean, std = channel_stats(splits["train"])
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
    if (
        cfg.steps is not None
    ):  # a budget in steps fixes the epochs, so the schedules and --resume see epochs
        cfg = replace(cfg, epochs=math.ceil(cfg.steps / len(loaders["train"])))
    cfg, model = build(cfg, info, mean, std)
    model.to(
        device, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format
    )
    # under torchrun, penalties of the global batch: per-class sums all-reduced before the ratio
    reg = create_regularizer(
        cfg, model, len(splits["train"]), distributed.all_reduce_sum if ranks.enabled else None
    ).to(device)
    for warning in reg.warnings(cfg) if ranks.main and not resume else []:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    forward = Forward(model)
    if ranks.enabled:
        forward = nn.parallel.DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    session = Session(
        cfg,
        run_dir,
        device,
        ranks,
        model,
        forward,
        reg,
        opt,
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
        if cfg.lr_schedule == "cosine"
        else torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0),
        torch.amp.GradScaler(
            device.type, enabled=cfg.amp and cfg.amp_dtype == "float16" and device.type == "cuda"
        ),
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


def _step(s: Session, loss) -> None:
    s.optimizer.zero_grad(set_to_none=True)
    s.scaler.scale(loss).backward()
    s.scaler.step(s.optimizer)
    s.scaler.update()


def train_epoch(s: Session, epoch: int, progress: bool | None = None) -> dict:
    """One pass over the training split (this process's shard of it); returns the epoch's training
    metrics, summed over all processes."""
    ramp = s.reg.schedule(epoch)
    s.reg.start_epoch(epoch)
    # same shuffles whether or not the run was resumed
    s.shuffle.manual_seed(s.cfg.seed * 1000 + epoch)
    if isinstance(s.loaders["train"].sampler, DistributedSampler):
        s.loaders["train"].sampler.set_epoch(epoch)
    s.model.train()
    tot = {"loss": 0.0, "correct": 0.0, "penalty": 0.0, "n": 0.0}
    bar = tqdm(
        s.loaders["train"],
        desc=f"epoch {epoch + 1}/{s.cfg.epochs}",
        leave=False,
        dynamic_ncols=True,
        disable=True if progress is False or not s.ranks.main else None,
    )
    batches = len(s.loaders["train"])
    last = batches if s.cfg.steps is None else min(batches, s.cfg.steps - epoch * batches)
    for i, (x, y) in enumerate(bar):
        if i == last:  # the step budget ends inside this epoch
            break
        x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
        if s.cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out = batch_losses(s.model, s.cfg, x, y, s.amp, s.reg, ramp, s.forward)
        if distributed.any_rank(
            not torch.isfinite(out["loss"]), s.device
        ):  # every rank stops together
            raise HerdError(
                f"the loss became non-finite at epoch {epoch + 1}; lower --lr or "
                f"--alpha-reg, or lengthen --warmup/--ramp (run folder {s.run_dir} kept for "
                f"inspection)"
            )
        _step(s, out["loss"])
        s.reg.after_step(out["batch"])
        b = len(y)
        tot["n"] += b
        tot["loss"] += out["loss"].item() * b
        tot["correct"] += float(out["correct"])
        tot["penalty"] += (out["penalty"].item() if out["penalty"] is not None else 0.0) * b
        bar.set_postfix(
            loss=f"{tot['loss'] / tot['n']:.3f}",
            acc=f"{tot['correct'] / tot['n']:.3f}",
            pen=f"{tot['penalty'] / tot['n']:.3f}",
        )
    s.scheduler.step()
    loss, correct, penalty, n = distributed.sum_floats(
        [tot["loss"], tot["correct"], tot["penalty"], tot["n"]], s.device
    )
    return {
        "epoch": epoch + 1,
        "penalty_ramp": ramp,
        "train_loss": loss / n,
        "train_accuracy": correct / n,
        "train_penalty": penalty / n,
    }


def save_checkpoint(s: Session, epoch: int) -> None:
    """Metrics so far and everything ``--resume`` needs, each written atomically (by rank 0)."""
    if s.ranks.main:
        _write_metrics(s.run_dir, s.rows)
        state = {
            "model": s.model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(),
            "epoch": epoch,
            "train_seconds": s.seconds,
            "rng": torch.get_rng_state(),
            "regularizer": s.reg.state_dict(),
        }
        atomic_write(s.run_dir / CHECKPOINT, lambda f: torch.save(state, f))
    distributed.barrier()


def finish(s: Session) -> Path:
    """Test metrics, model.safetensors and summary.json; then ``latest`` points at the run (rank
    0)."""
    from safetensors.torch import save

    test = evaluate(
        s.model, s.cfg, s.loaders["test"], s.device, hessian_samples(s.model, s.cfg, "test")
    )
    if s.ranks.main:
        weights = {k: v.detach().cpu().contiguous() for k, v in s.model.state_dict().items()}
        atomic_write(s.run_dir / WEIGHTS, save(weights))
        purity = {k: v for k, v in test.items() if "purity" in k}
        summary = {
            "test_accuracy": test["accuracy"],
            **purity,
            "test_loss": test["loss"],
            "test_recon": test["recon"],
            "train_seconds": s.seconds,
            "epochs": s.cfg.epochs,
            "processes": s.ranks.world,
            "device": str(s.device),
            "torch": torch.__version__,
            "warnings": s.reg.warnings(s.cfg),
            "decoder_collapse": _last(s.rows, "collapse_reasons"),
            "decoder_collapse_seen": s.collapse or None,
            "config": asdict(s.cfg),
        }
        write_json(s.run_dir / "summary.json", summary)
        point_latest(s.run_dir)
    distributed.barrier()
    return s.run_dir


def _last(rows: list[dict], key: str):
    return (rows[-1].get(key) or None) if rows else None


def _watch_decoder(s: Session, probe) -> None:
    """Decoder health in the last metrics row; one line on stderr the first epoch the decoder
    collapses."""
    s.rows[-1].update(decoder_diagnostics(s.model, probe[0], s.cfg.recon_loss))
    reasons = check_collapse(
        s.rows, s.cfg.warmup, probe[1], final=s.rows[-1]["epoch"] == s.cfg.epochs
    )
    if reasons and not s.collapse:
        s.collapse = [f"epoch {s.rows[-1]['epoch']}: {r}" for r in reasons]
        if s.ranks.main:
            print(
                f"warning: the decoder collapsed: {'; '.join(s.collapse)} (run {s.run_dir})",
                file=sys.stderr,
                flush=True,
            )


# public API


def train(cfg: Config, resume: str | None = None, progress: bool | None = None) -> Path:
    """Train a model as ``cfg`` says and write its run folder; returns the folder.

    With ``resume`` (an interrupted run folder), training continues after the last finished epoch
    with the run's own config.yaml; only ``cfg.epochs`` is taken from ``cfg``, so a run can be
    extended. Under torchrun every process runs this; rank 0 alone writes the folder.
    """
    s = setup(cfg, resume)
    val_samples = hessian_samples(s.model, s.cfg, "val")
    probe = (
        decoder_probe(
            s.loaders["val"].dataset, s.loaders["train"].dataset, s.device, s.cfg.recon_loss
        )
        if s.model.decode is not None
        else None
    )
    for epoch in range(s.start_epoch, s.cfg.epochs):
        t0 = time.perf_counter()
        row = train_epoch(s, epoch, progress)
        s.seconds += time.perf_counter() - t0
        val = evaluate(s.model, s.cfg, s.loaders["val"], s.device, val_samples)
        s.rows.append({**row, **{f"val_{k}": v for k, v in val.items()}, "seconds": s.seconds})
        if probe is not None:
            _watch_decoder(s, probe)
        save_checkpoint(s, epoch)
        if progress is not False and s.ranks.main:
            tqdm.write(
                f"epoch {epoch + 1}/{s.cfg.epochs}  loss {row['train_loss']:.3f}  "
                f"val acc {val['accuracy']:.3f}  purity {val['block_purity']:.3f}  "
                f"penalty {row['train_penalty']:.3f}"
            )
    return finish(s)
