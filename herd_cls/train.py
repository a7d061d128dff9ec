"""Training: task losses + the regularizer's term, per-epoch metrics, atomic checkpoints, a run folder.

``train(cfg)`` reads like the loop it is: :func:`setup` builds a :class:`Session`, :func:`train_epoch`
runs one epoch, :func:`save_checkpoint` writes what ``--resume`` needs, :func:`finish` exports.
"""
from __future__ import annotations

import csv
import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .config import Config, load_config, save_config
from .data import create_datasets
from .files import atomic_write
from .models import LatentModel
from .purity import measure_purity
from .registry import HerdError
from .regularizer import HeRD, per_sample_loss
from .regularizers import Batch, Regularizer, create_regularizer, reparameterise
from .run import (CHECKPOINT, WEIGHTS, build, load_checkpoint, point_latest, read_metrics, save_data_info,
                  write_json)

EVAL_HESSIAN_SAMPLES = 512  # Hessians for block purity are measured on at most this many samples
# the exact decoder Hessian costs seconds per batch on a CPU, so per-epoch validation of a decoder-side
# HeRD run measures purity on fewer samples; the test split always uses EVAL_HESSIAN_SAMPLES
VAL_DECODER_HESSIAN_SAMPLES = 128


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


def channel_stats(ds: Dataset, limit: int = 2000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (at most ``limit``) training images."""
    x = torch.stack([ds[i][0] for i in range(min(limit, len(ds)))])
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).clamp_min(1e-3).tolist()


def batch_losses(model: LatentModel, cfg: Config, x, y, amp: bool = False, reg: Regularizer | None = None,
                 ramp: float = 0.0) -> dict:
    """All loss terms of one batch; ``loss`` is what is minimised, with ``ramp`` times the regularizer's
    term when a regularizer is given and ``ramp > 0``."""
    mu = logvar = None
    with torch.autocast(x.device.type, enabled=amp):
        if model.variational:
            mu, logvar = model.encode_distribution(x)
            z = reparameterise(mu, logvar) if model.training else mu
        else:
            z = model.encode(x)
        logits = model.classify(z)
        ce = F.cross_entropy(logits.float(), y)
        recon = None
        if model.decode:
            x_hat = model.decode(z).float()
            # a diverged run must reach the trainer's NaN check, not a RuntimeError from F.binary_cross_entropy
            recon = (per_sample_loss(cfg.recon_loss)(x_hat, x).mean() if torch.isfinite(x_hat).all()
                     else x_hat.new_tensor(float("nan")))
    loss = cfg.alpha_cl * ce + (cfg.alpha_ae * recon if recon is not None else 0.0)
    as_float = (lambda t: None if t is None else t.float())  # noqa: E731
    batch = Batch(x, y, z.float(), as_float(mu), as_float(logvar))
    penalty = None
    # a non-finite loss skips the regularizer, which may run the decoder's loss again on NaN images
    if reg is not None and ramp > 0 and torch.isfinite(loss):
        with torch.autocast(x.device.type, enabled=False):  # curvature and KL terms in float32
            penalty, term = reg.loss(model, batch)
        loss = loss + ramp * term
    return {"loss": loss, "ce": ce, "recon": recon, "penalty": penalty, "batch": batch,
            "correct": (logits.argmax(1) == y).sum()}


@torch.no_grad()
def evaluate(model: LatentModel, herd: HeRD, cfg: Config, loader: DataLoader, device: torch.device,
             hessian_samples: int = EVAL_HESSIAN_SAMPLES) -> dict:
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
        purity = measure_purity(model, loader, herd.blocks, cfg.wrt, cfg.recon_loss, cfg.hessian_method,
                                hessian_samples)
    return {"loss": sums["loss"] / n, "accuracy": sums["correct"] / n, "ce": sums["ce"] / n,
            "recon": sums["recon"] / n if model.decode else None, **purity.summary()}


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    atomic_write(run_dir / "metrics.jsonl", lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in rows)))
    keys = [k for k in rows[0] if not isinstance(rows[0][k], (list, str))]

    def write_csv(p: Path) -> None:
        with p.open("w", newline="") as f:
            w = csv.DictWriter(f, keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    atomic_write(run_dir / "metrics.csv", write_csv)


def _run_dir(cfg: Config, resume: str | None) -> Path:
    if resume:
        path = Path(resume)
        if not (path / CHECKPOINT).is_file():
            raise HerdError(f"nothing to resume at {path}: no {CHECKPOINT}; pass the folder of an interrupted run")
        return path
    name = cfg.name or f"{cfg.dataset}-{cfg.backbone}-{cfg.reg}-{datetime.now():%Y%m%d-%H%M%S}"
    path = Path(cfg.out_dir) / name
    if path.exists():
        raise HerdError(f"run folder {path} already exists; pick another --name or --resume {path}")
    return path


# the loop

@dataclass
class Session:
    """Everything one training run holds between epochs."""

    cfg: Config
    run_dir: Path
    device: torch.device
    model: LatentModel
    herd: HeRD
    reg: Regularizer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loaders: dict[str, DataLoader]
    shuffle: torch.Generator
    start_epoch: int = 0
    seconds: float = 0.0
    rows: list[dict] = field(default_factory=list)

    @property
    def amp(self) -> bool:
        return self.cfg.amp and self.device.type == "cuda"


def setup(cfg: Config, resume: str | None = None) -> Session:
    """Data, model, regularizer and optimiser for ``cfg``; a new run folder, or the state of ``resume``."""
    if resume:  # the run's own config; only a larger --epochs is taken from the command line
        saved = Path(resume) / "config.yaml"
        cfg = replace(load_config(saved) if saved.is_file() else cfg, epochs=cfg.epochs)
    run_dir = _run_dir(cfg, resume)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    splits, info = create_datasets(cfg.dataset, cfg.data_root, cfg.download, cfg.image_size, cfg.num_samples)
    if cfg.num_classes is not None and cfg.num_classes != info.num_classes:
        raise HerdError(f"--num-classes {cfg.num_classes} does not match the {info.num_classes} classes of "
                        f"{cfg.dataset}; drop --num-classes or choose the matching data set")
    mean, std = channel_stats(splits["train"])
    cfg = replace(cfg, image_size=info.image_size, num_classes=info.num_classes, alpha_reg=cfg.reg_weight)
    cfg, model, herd = build(cfg, info, mean, std)
    model.to(device), herd.to(device)
    reg = create_regularizer(cfg, model, herd, len(splits["train"])).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    shuffle = torch.Generator()
    loaders = {s: DataLoader(ds, batch_size=cfg.batch_size, shuffle=(s == "train"), generator=shuffle,
                             num_workers=cfg.num_workers, drop_last=(s == "train" and len(ds) > cfg.batch_size))
               for s, ds in splits.items()}
    session = Session(cfg, run_dir, device, model, herd, reg, opt,
                      torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs), loaders, shuffle)
    if resume:
        _restore(session)
    else:
        run_dir.mkdir(parents=True)
        save_config(cfg, run_dir / "config.yaml")
        save_data_info(run_dir, info, mean, std)
    return session


def _restore(s: Session) -> None:
    """Weights, optimiser, scheduler, regularizer state, RNG and metrics of the last finished epoch."""
    path = s.run_dir / CHECKPOINT
    state = load_checkpoint(path, s.device)
    try:
        s.model.load_state_dict(state["model"])
        s.optimizer.load_state_dict(state["optimizer"])
        s.scheduler.load_state_dict(state["scheduler"])
        s.reg.load_state_dict(state)
        torch.set_rng_state(state["rng"])
        s.start_epoch, s.seconds = state["epoch"] + 1, state["train_seconds"]
    except (KeyError, RuntimeError, ValueError, TypeError):
        raise HerdError(f"{path} does not hold this run's training state (config.yaml describes another model "
                        "or regularizer); start a new run instead of --resume") from None
    s.rows = read_metrics(s.run_dir)


def train_epoch(s: Session, epoch: int, progress: bool | None = None) -> dict:
    """One pass over the training split; returns the epoch's training metrics."""
    ramp = s.reg.schedule(epoch)
    s.reg.start_epoch(epoch)
    s.shuffle.manual_seed(s.cfg.seed * 1000 + epoch)  # same shuffles whether or not the run was resumed
    s.model.train()
    tot = {"loss": 0.0, "correct": 0.0, "penalty": 0.0, "n": 0}
    bar = tqdm(s.loaders["train"], desc=f"epoch {epoch + 1}/{s.cfg.epochs}", disable=progress is False,
               leave=False, dynamic_ncols=True)
    for x, y in bar:
        x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
        out = batch_losses(s.model, s.cfg, x, y, s.amp, s.reg, ramp)
        if not torch.isfinite(out["loss"]):
            raise HerdError(f"the loss became {out['loss'].item()} at epoch {epoch + 1}; lower --lr or "
                            f"--alpha-reg, or lengthen --warmup/--ramp (run folder {s.run_dir} kept for inspection)")
        s.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        s.optimizer.step()
        s.reg.after_step(out["batch"])
        b = len(y)
        tot["n"] += b
        tot["loss"] += out["loss"].item() * b
        tot["correct"] += float(out["correct"])
        tot["penalty"] += (out["penalty"].item() if out["penalty"] is not None else 0.0) * b
        bar.set_postfix(loss=f"{tot['loss'] / tot['n']:.3f}", acc=f"{tot['correct'] / tot['n']:.3f}",
                        pen=f"{tot['penalty'] / tot['n']:.3f}")
    s.scheduler.step()
    return {"epoch": epoch + 1, "penalty_weight": ramp, "train_loss": tot["loss"] / tot["n"],
            "train_accuracy": tot["correct"] / tot["n"], "train_penalty": tot["penalty"] / tot["n"]}


def save_checkpoint(s: Session, epoch: int) -> None:
    """Metrics so far and everything ``--resume`` needs, each written atomically."""
    _write_metrics(s.run_dir, s.rows)
    state = {"model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(),
             "scheduler": s.scheduler.state_dict(), "epoch": epoch, "train_seconds": s.seconds,
             "rng": torch.get_rng_state(), **s.reg.state_dict()}
    atomic_write(s.run_dir / CHECKPOINT, lambda p: torch.save(state, p))


def finish(s: Session) -> Path:
    """Test metrics, model.safetensors and summary.json; then ``latest`` points at the run."""
    from safetensors.torch import save_file

    test = evaluate(s.model, s.herd, s.cfg, s.loaders["test"], s.device)
    weights = {k: v.detach().cpu().contiguous() for k, v in s.model.state_dict().items()}
    atomic_write(s.run_dir / WEIGHTS, lambda p: save_file(weights, str(p)))
    purity = {k: v for k, v in test.items() if "purity" in k}
    summary = {"test_accuracy": test["accuracy"], **purity, "test_loss": test["loss"],
               "test_recon": test["recon"], "train_seconds": s.seconds, "epochs": s.cfg.epochs,
               "device": str(s.device), "torch": torch.__version__, "config": asdict(s.cfg)}
    write_json(s.run_dir / "summary.json", summary)
    point_latest(s.run_dir)
    return s.run_dir


# public API

def train(cfg: Config, resume: str | None = None, progress: bool | None = None) -> Path:
    """Train a model as ``cfg`` says and write its run folder; returns the folder.

    With ``resume`` (an interrupted run folder), training continues after the last finished epoch
    with the run's own config.yaml; only ``cfg.epochs`` is taken from ``cfg``, so a run can be extended.
    """
    s = setup(cfg, resume)
    val_samples = EVAL_HESSIAN_SAMPLES if s.cfg.wrt == "classifier" else VAL_DECODER_HESSIAN_SAMPLES
    for epoch in range(s.start_epoch, s.cfg.epochs):
        t0 = time.perf_counter()
        row = train_epoch(s, epoch, progress)
        s.seconds += time.perf_counter() - t0
        val = evaluate(s.model, s.herd, s.cfg, s.loaders["val"], s.device, val_samples)
        s.rows.append({**row, **{f"val_{k}": v for k, v in val.items()}, "seconds": s.seconds})
        save_checkpoint(s, epoch)
        if progress is not False:
            tqdm.write(f"epoch {epoch + 1}/{s.cfg.epochs}  loss {row['train_loss']:.3f}  "
                       f"val acc {val['accuracy']:.3f}  purity {val['block_purity']:.3f}  "
                       f"penalty {row['train_penalty']:.3f}")
    return finish(s)
