"""Training: task losses + weight * HeRD, per-epoch metrics, atomic checkpoints, a run folder."""
from __future__ import annotations

import csv
import json
import random
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .baselines import FactorDiscriminator, gaussian_kl, hessian_penalty, reparameterise, total_correlation
from .config import HERD_REGS, Config, load_config, save_config
from .data import create_datasets
from .files import atomic_write
from .metrics import class_block_purity
from .models import LatentModel
from .registry import HerdError
from .regularizer import HeRD, class_abs_sum, latent_hessian, penalty_weight, per_sample_loss
from .run import (CHECKPOINT, WEIGHTS, build, hessian_target, point_latest, save_data_info,
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


@dataclass
class Baseline:
    """What a baseline regularizer carries between batches: the FactorVAE discriminator and its
    optimiser, the current KL capacity, the training-set size (for beta-TCVAE's estimator)."""

    dataset_size: int
    capacity: float = 0.0
    discriminator: FactorDiscriminator | None = None
    optimizer: torch.optim.Optimizer | None = None


def regularizer_loss(model: LatentModel, herd: HeRD, cfg: Config, x: Tensor, y: Tensor, z: Tensor,
                     mu: Tensor | None, logvar: Tensor | None, baseline: Baseline) -> tuple[Tensor, Tensor]:
    """(penalty, weighted term added to the loss before the warm-up ramp) for ``cfg.reg``.

    The VAE terms are divided by the pixel count, since the reconstruction loss is a per-pixel
    mean: with ``--recon-loss bce`` the objective is then the ELBO's, scaled by 1 / pixels.
    """
    weight = cfg.reg_weight
    if cfg.reg in HERD_REGS:
        head, target, hloss = hessian_target(model, cfg, x, y)
        penalty = herd(head, z, target, labels=y, loss=hloss)
        return penalty, weight * penalty
    if cfg.reg == "hessian-penalty":
        penalty = hessian_penalty(model.decode, z, scale=z.detach().std(0).clamp_min(1e-6))
        return penalty, weight * penalty
    pixels = x[0].numel()
    kl = gaussian_kl(mu, logvar).mean()
    if cfg.reg == "beta-vae":
        term = weight * kl
    elif cfg.reg == "beta-vae-capacity":
        term = weight * (kl - baseline.capacity).abs()
    elif cfg.reg == "factor-vae":
        term = kl + weight * baseline.discriminator.total_correlation(z)
    else:  # beta-tcvae: KL + (beta - 1) TC, the decomposition with alpha = gamma = 1
        term = kl + (weight - 1) * total_correlation(z, mu, logvar, baseline.dataset_size)
    return kl / pixels, term / pixels


def batch_losses(model: LatentModel, herd: HeRD, cfg: Config, x: Tensor, y: Tensor, weight: float, amp: bool,
                 baseline: Baseline | None = None) -> dict:
    """All loss terms of one batch; ``loss`` is what is minimised (the regularizer only when
    ``weight > 0`` and a ``baseline`` state is given)."""
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
    penalty = None
    # a non-finite loss skips the regularizer, which may run the decoder's loss again on NaN images
    if cfg.reg != "none" and weight > 0 and baseline is not None and torch.isfinite(loss):
        with torch.autocast(x.device.type, enabled=False):
            penalty, term = regularizer_loss(model, herd, cfg, x, y, z.float(),
                                             None if mu is None else mu.float(),
                                             None if logvar is None else logvar.float(), baseline)
        loss = loss + weight * term
    return {"loss": loss, "ce": ce, "recon": recon, "penalty": penalty, "z": z,
            "correct": (logits.argmax(1) == y).sum()}


@torch.no_grad()
def evaluate(model: LatentModel, herd: HeRD, cfg: Config, loader: DataLoader, device: torch.device,
             hessian_samples: int = EVAL_HESSIAN_SAMPLES) -> dict:
    """Loss, accuracy, reconstruction error, and (on the first ``hessian_samples``) penalty and block purity."""
    model.eval()
    sums = {"loss": 0.0, "ce": 0.0, "recon": 0.0, "correct": 0.0}
    n, penalties = 0, []
    K, d = herd.num_classes, herd.latent_dim
    hsum, counts = torch.zeros(K, d, d, device=device), torch.zeros(K, device=device)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = batch_losses(model, herd, cfg, x, y, 0.0, False)
        if counts.sum() < hessian_samples:
            with torch.enable_grad():
                head, target, hloss = hessian_target(model, cfg, x, y)
                H = latent_hessian(head, out["z"], target, hloss, cfg.hessian_method).detach()
            if cfg.reg in HERD_REGS:
                penalties.append(float(herd.penalty(H, y)))
            total, count = class_abs_sum(H, y, K)
            hsum += total
            counts += count
        n += len(y)
        for k in ("loss", "ce", "recon"):
            if out[k] is not None:
                sums[k] += float(out[k]) * len(y)
        sums["correct"] += float(out["correct"])
    purity = class_block_purity(hsum / counts.clamp_min(1).view(-1, 1, 1), herd.blocks)
    return {
        "loss": sums["loss"] / n, "accuracy": sums["correct"] / n, "ce": sums["ce"] / n,
        "recon": sums["recon"] / n if model.decode else None,
        "penalty": float(np.mean(penalties)) if penalties else None,
        "block_purity": float(torch.nanmean(purity)), "block_purity_per_class": purity.tolist(),
    }


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    atomic_write(run_dir / "metrics.jsonl", lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in rows)))
    keys = [k for k in rows[0] if not isinstance(rows[0][k], list)]

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


# public API

def train(cfg: Config, resume: str | None = None, progress: bool | None = None) -> Path:
    """Train a model as ``cfg`` says and write its run folder; returns the folder.

    With ``resume`` (a run folder), training continues from its last checkpoint with the
    run's own config (``cfg`` values given explicitly, such as more epochs, still apply).
    """
    if resume:
        saved = load_config(Path(resume) / "config.yaml") if (Path(resume) / "config.yaml").is_file() else cfg
        cfg = replace(saved, epochs=cfg.epochs)
    run_dir = _run_dir(cfg, resume)
    device = resolve_device(cfg.device)
    amp = cfg.amp and device.type == "cuda"
    seed_everything(cfg.seed)
    splits, info = create_datasets(cfg.dataset, cfg.data_root, cfg.download, cfg.image_size, cfg.num_samples)
    if cfg.num_classes is not None and cfg.num_classes != info.num_classes:
        raise HerdError(f"--num-classes {cfg.num_classes} does not match the {info.num_classes} classes of "
                        f"{cfg.dataset}; drop --num-classes or choose the matching data set")
    mean, std = channel_stats(splits["train"])
    cfg = replace(cfg, image_size=info.image_size, num_classes=info.num_classes,
                  alpha_reg=cfg.reg_weight if cfg.reg != "none" else cfg.alpha_reg)
    cfg, model, herd = build(cfg, info, mean, std)
    model.to(device)
    herd.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    baseline = Baseline(dataset_size=len(splits["train"]))
    if cfg.reg == "factor-vae":  # Kim & Mnih's discriminator optimiser: Adam, lr 1e-4, betas (0.5, 0.9)
        baseline.discriminator = FactorDiscriminator(cfg.latent_dim).to(device)
        baseline.optimizer = torch.optim.Adam(baseline.discriminator.parameters(), lr=1e-4, betas=(0.5, 0.9))
    start, rows, elapsed = 0, [], 0.0
    if resume:
        state = torch.load(run_dir / CHECKPOINT, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, elapsed = state["epoch"] + 1, state["train_seconds"]
        if baseline.discriminator is not None:
            baseline.discriminator.load_state_dict(state["discriminator"])
            baseline.optimizer.load_state_dict(state["discriminator_optimizer"])
        torch.set_rng_state(state["rng"])
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    else:
        run_dir.mkdir(parents=True)
        save_config(cfg, run_dir / "config.yaml")
        save_data_info(run_dir, info, mean, std)

    gen = torch.Generator()
    loaders = {s: DataLoader(ds, batch_size=cfg.batch_size, shuffle=(s == "train"), generator=gen,
                             num_workers=cfg.num_workers, drop_last=(s == "train" and len(ds) > cfg.batch_size))
               for s, ds in splits.items()}
    val_hessian_samples = EVAL_HESSIAN_SAMPLES if cfg.wrt == "classifier" else VAL_DECODER_HESSIAN_SAMPLES
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        gen.manual_seed(cfg.seed * 1000 + epoch)  # same shuffles whether or not the run was resumed
        weight = penalty_weight(epoch, cfg.warmup, cfg.ramp) if cfg.reg != "none" else 0.0
        baseline.capacity = cfg.capacity * min(1.0, epoch / max(1, cfg.epochs - 1))
        model.train()
        tot = {"loss": 0.0, "correct": 0.0, "penalty": 0.0, "n": 0}
        bar = tqdm(loaders["train"], desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=progress is False,
                   leave=False, dynamic_ncols=True)
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = batch_losses(model, herd, cfg, x, y, weight, amp, baseline)
            if not torch.isfinite(out["loss"]):
                raise HerdError(f"the loss became {out['loss'].item()} at epoch {epoch + 1}; lower --lr or "
                                f"--alpha-reg, or lengthen --warmup/--ramp (run folder {run_dir} kept for inspection)")
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            if baseline.discriminator is not None:
                baseline.optimizer.zero_grad(set_to_none=True)
                baseline.discriminator.loss(out["z"].float()).backward()
                baseline.optimizer.step()
            b = len(y)
            tot["n"] += b
            tot["loss"] += out["loss"].item() * b
            tot["correct"] += float(out["correct"])
            tot["penalty"] += (out["penalty"].item() if out["penalty"] is not None else 0.0) * b
            bar.set_postfix(loss=f"{tot['loss'] / tot['n']:.3f}", acc=f"{tot['correct'] / tot['n']:.3f}",
                            pen=f"{tot['penalty'] / tot['n']:.3f}")
        sched.step()
        elapsed += time.perf_counter() - t0
        val = evaluate(model, herd, cfg, loaders["val"], device, val_hessian_samples)
        row = {"epoch": epoch + 1, "penalty_weight": weight, "train_loss": tot["loss"] / tot["n"],
               "train_accuracy": tot["correct"] / tot["n"], "train_penalty": tot["penalty"] / tot["n"],
               **{f"val_{k}": v for k, v in val.items()}, "seconds": elapsed}
        rows.append(row)
        _write_metrics(run_dir, rows)
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "epoch": epoch, "train_seconds": elapsed, "rng": torch.get_rng_state()}
        if baseline.discriminator is not None:
            state["discriminator"] = baseline.discriminator.state_dict()
            state["discriminator_optimizer"] = baseline.optimizer.state_dict()
        atomic_write(run_dir / CHECKPOINT, lambda p: torch.save(state, p))
        if progress is not False:
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.3f}  "
                       f"val acc {val['accuracy']:.3f}  purity {val['block_purity']:.3f}  "
                       f"penalty {row['train_penalty']:.3f}")

    from safetensors.torch import save_file

    test = evaluate(model, herd, cfg, loaders["test"], device)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / WEIGHTS, lambda p: save_file(weights, str(p)))
    summary = {"test_accuracy": test["accuracy"], "block_purity": test["block_purity"],
               "block_purity_per_class": test["block_purity_per_class"], "test_loss": test["loss"],
               "test_recon": test["recon"], "train_seconds": elapsed, "epochs": cfg.epochs,
               "device": str(device), "torch": torch.__version__, "config": asdict(cfg)}
    write_json(run_dir / "summary.json", summary)
    point_latest(run_dir)
    return run_dir
