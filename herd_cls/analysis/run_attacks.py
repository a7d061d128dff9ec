"""Attacking a trained run for the robustness command: a class-balanced test batch, the check that a
transfer source matches the run, and the robustness result with the request it answers."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import HerdError
from ..run import Run


def balanced_test_batch(run: Run, n_samples: int) -> tuple[Tensor, Tensor]:
    """About ``n_samples`` test images (B, C, H, W) and labels (B,), the same number from every
    class."""
    from ..data import dataset_labels

    data = run.data("test")
    labels = torch.as_tensor(dataset_labels(data))
    per = max(1, n_samples // len(run.class_names))
    idx = (
        torch.cat([(labels == c).nonzero().flatten()[:per] for c in range(len(run.class_names))])
        .sort()
        .values
    )
    return torch.stack([data[int(i)][0] for i in idx]), labels[idx]


def attack_run(
    run: Run,
    attacks: list[str],
    eps: list[float],
    steps: int = 10,
    restarts: int = 1,
    n_samples: int = 200,
    queries: int = 1000,
    transfer_from: Run | None = None,
    transfer_attack: str = "pgd-linf",
    progress=None,
) -> dict:
    """Robust accuracy of one run per attack, eps and class, with latent displacement, gradient
    norms and sanity checks (see :func:`herd_cls.analysis.robustness.evaluate_robustness`); with
    ``transfer_from``, also ``transfer_attack`` crafted on that run's model. ``settings`` records
    the request."""
    from .attacks import Budget, check_attack_request
    from .robustness import evaluate_robustness

    budget = Budget(steps, restarts, queries, len(run.class_names))
    check_attack_request(
        attacks, eps, budget.num_classes, transfer_attack if transfer_from else None, budget
    )
    if n_samples < 1:
        raise HerdError("--n-samples must be at least 1")
    if transfer_from is not None:
        check_transfer_source(run, transfer_from)
    x, y = balanced_test_batch(run, n_samples)
    result = evaluate_robustness(
        run.classifier(),
        run.encode,
        x,
        y,
        run.layout,
        attacks,
        eps,
        steps,
        restarts,
        queries,
        transfer_from.classifier() if transfer_from else None,
        transfer_attack,
        progress=progress,
    )
    result["settings"] = {
        "attacks": attacks,
        "eps": eps,
        "steps": steps,
        "restarts": restarts,
        "queries": queries,
        "n_samples": len(y),
        "run": str(run.path),
        "transfer_from": str(transfer_from.path) if transfer_from else None,
        "transfer_attack": transfer_attack if transfer_from else None,
    }
    return result


def check_transfer_source(run: Run, source: Run) -> None:
    """A transfer source must read the same images and name the same classes as the attacked run."""
    ours, theirs = run.info, source.info
    if theirs.class_names != ours.class_names:
        raise HerdError(
            f"--transfer-from {source.path.name} has classes {theirs.class_names}, this run has "
            f"{ours.class_names}; craft transfer attacks on a run of the same data set"
        )
    if (theirs.in_chans, theirs.image_size) != (ours.in_chans, ours.image_size):
        raise HerdError(
            f"--transfer-from {source.path.name} takes "
            f"{theirs.in_chans}x{theirs.image_size}x{theirs.image_size} images, this run "
            f"{ours.in_chans}x{ours.image_size}x{ours.image_size}; train the source with the same "
            "--image-size"
        )
