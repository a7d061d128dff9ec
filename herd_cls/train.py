"""Training: task losses + the regularizer's term, per-epoch metrics, atomic checkpoints, a run
folder.

``train(cfg)`` reads like the loop it is: :func:`~herd_cls.session.setup` builds a
:class:`~herd_cls.session.Session`, :func:`train_epoch` runs one epoch,
:func:`~herd_cls.evaluation.evaluate` measures it, :func:`save_checkpoint` writes what ``--resume``
needs, :func:`finish` exports.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from . import distributed
from .config import Config
from .diagnostics import check_collapse, decoder_diagnostics, decoder_probe
from .evaluation import evaluate, hessian_samples
from .files import atomic_write
from .objective import batch_losses
from .registry import HerdError
from .run import CHECKPOINT, WEIGHTS, point_latest, write_json
from .session import Session, setup


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
        # every rank stops together
        if distributed.any_rank(not torch.isfinite(out["loss"]), s.device):
            raise HerdError(
                f"the loss became non-finite at epoch {epoch + 1}; lower --lr or --alpha-reg, or "
                f"lengthen --warmup/--ramp (run folder {s.run_dir} kept for inspection)"
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
                f"epoch {epoch + 1}/{s.cfg.epochs}  loss {row['train_loss']:.3f}  val acc "
                f"{val['accuracy']:.3f}  purity {val['block_purity']:.3f}  penalty "
                f"{row['train_penalty']:.3f}"
            )
    return finish(s)
