"""Figures as PNG files (matplotlib with the Agg backend, imported lazily)."""
from __future__ import annotations

from pathlib import Path

from torch import Tensor


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sweep_grid(images: Tensor, offsets: Tensor, title: str, path: Path) -> Path:
    """images (T, S, C, H, W) -> a grid with one row per sample and one column per step."""
    plt = _plt()
    steps, samples = images.shape[:2]
    fig, axes = plt.subplots(samples, steps, figsize=(0.9 * steps, 0.9 * samples + 0.5), squeeze=False)
    for s in range(samples):
        for t in range(steps):
            img = images[t, s].permute(1, 2, 0).clamp(0, 1).numpy()
            axes[s, t].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            axes[s, t].set_xticks([]), axes[s, t].set_yticks([])
            if s == samples - 1:
                axes[s, t].set_xlabel(f"{offsets[t]:+.1f}σ", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def sweep_probabilities(probs: Tensor, offsets: Tensor, class_names: list[str], target: int, title: str,
                        path: Path) -> Path:
    """probs (T, S, K) -> mean probability of every class along the sweep; the target class bold."""
    plt = _plt()
    mean = probs.mean(1).numpy()
    fig, ax = plt.subplots(figsize=(3.6, 2.6))
    for k, name in enumerate(class_names):
        ax.plot(offsets.numpy(), mean[:, k], lw=2.5 if k == target else 0.8,
                color="C3" if k == target else "0.6", label=name if k == target else None)
    ax.set_xlabel("offset (σ of the dim)"), ax.set_ylabel("mean probability"), ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
