"""Figures of latent sweeps: image grids, exemplar-and-decoded strips, class probabilities along a
sweep, and how much every dim moves one class. Matplotlib only here and in :mod:`.figures`, whose
helpers these share."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..files import atomic_write
from ..layout import BlockLayout
from .figures import _plt, _save, _show


def sweep_grid(images: Tensor, offsets: Tensor, title: str, path: Path) -> Path:
    """images (T, S, C, H, W) -> a grid with one row per sample and one column per step."""
    plt = _plt()
    steps, samples = images.shape[:2]
    fig, axes = plt.subplots(
        samples, steps, figsize=(0.9 * steps, 0.9 * samples + 0.5), squeeze=False
    )
    for s in range(samples):
        for t in range(steps):
            img = images[t, s].permute(1, 2, 0).clamp(0, 1).numpy()
            axes[s, t].imshow(
                img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1
            )
            axes[s, t].set_xticks([]), axes[s, t].set_yticks([])
            if s == samples - 1:
                axes[s, t].set_xlabel(f"{offsets[t]:+.1f}σ", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path, dpi=80)


def latent_grid(images: Tensor, offsets: Tensor, labels: list[str], title: str, path: Path) -> Path:
    """images (D, T, S, C, H, W) -> one panel per image: a row per latent dim (labelled), a column
    per offset."""
    plt = _plt()
    dims, steps, samples = images.shape[:3]
    fig, axes = plt.subplots(
        dims,
        samples * steps,
        squeeze=False,
        figsize=(0.62 * samples * steps + 1.4, 0.62 * dims + 0.6),
        gridspec_kw={"wspace": 0.04, "hspace": 0.04},
    )
    for d in range(dims):
        for s in range(samples):
            for t in range(steps):
                ax = axes[d, s * steps + t]
                _show(ax, images[d, t, s])
                if s and not t:
                    ax.spines["left"].set(color="C0", linewidth=2)
                if d == dims - 1:
                    ax.set_xlabel(
                        f"{offsets[t]:+.0f}σ" if t in (0, steps - 1) else "", fontsize=6, labelpad=1
                    )
        axes[d, 0].set_ylabel(labels[d], fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(
        left=1.3 / fig.get_figwidth(), right=0.99, bottom=0.06, top=1 - 0.35 / fig.get_figheight()
    )
    atomic_write(path, lambda f: fig.savefig(f, dpi=80, format="png"))
    plt.close(fig)
    return path


def image_sweep(
    exemplar_images: Tensor,
    exemplar_values: Tensor,
    decoded: Tensor,
    offsets: Tensor,
    title: str,
    decoder: str,
    path: Path,
) -> Path:
    """What one latent dim means, in two picture rows.

    Top: test images (N, C, H, W) ordered by the dim's value (N,), low to high. Below: the dim swept
    on a few images, drawn by ``decoder`` (a label such as "post-hoc decoder"); decoded is (T, S, C,
    H, W).
    """
    plt = _plt()
    steps, samples = decoded.shape[:2]
    n = len(exemplar_images)
    width = 0.75 * max(n, steps)
    fig = plt.figure(figsize=(width, 0.75 * (1 + samples) + 0.9))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.35, samples + 0.4])
    axes = top.subplots(1, n, squeeze=False)[0]
    for i, ax in enumerate(axes):
        _show(ax, exemplar_images[i])
        ax.set_xlabel(f"{float(exemplar_values[i]):+.2f}", fontsize=6, labelpad=1)
    top.suptitle(f"{title}: test images by value, low → high", fontsize=8)
    grid = bottom.subplots(samples, steps, squeeze=False)
    for s in range(samples):
        for t in range(steps):
            _show(grid[s, t], decoded[t, s])
            if s == samples - 1:
                grid[s, t].set_xlabel(f"{offsets[t]:+.1f}σ", fontsize=6, labelpad=1)
    bottom.suptitle(f"swept on {samples} images, drawn by the {decoder}", fontsize=8)
    atomic_write(path, lambda f: fig.savefig(f, dpi=80, format="png"))
    plt.close(fig)
    return path


# above 10 classes, a sweep plot draws the target, the 5 classes that move most, and the rest summed
SWEEP_MOVERS = 5


def sweep_probabilities(
    probs: Tensor, offsets: Tensor, class_names: list[str], target: int, title: str, path: Path
) -> Path:
    """probs (T, S, K) -> mean probability of every class along the sweep; the target class bold."""
    fig = _sweep_probability_figure(probs, offsets, class_names, target, title)
    return _save(fig, path, tight=False)


def _sweep_probability_figure(
    probs: Tensor, offsets: Tensor, class_names: list[str], target: int, title: str
):
    """Up to 10 classes, one line each; above, the target, the SWEEP_MOVERS other classes whose mean
    probability changes most along the sweep, and the remaining classes' summed probability
    (dashed), so that drawing costs the same at 1000 classes as at 10."""
    plt = _plt()
    mean = probs.mean(1).numpy()
    others = [k for k in range(len(class_names)) if k != target]
    if len(class_names) > 10:
        change = mean.max(0) - mean.min(0)
        others = sorted(others, key=lambda k: -change[k])[:SWEEP_MOVERS]
    fig, ax = plt.subplots(figsize=(3.6, 2.6))
    # tight_layout's margins at this size and these fonts, fixed: a sweep page draws one per dim
    fig.subplots_adjust(left=0.185, right=0.96, bottom=0.225, top=0.87)
    for k in others:
        ax.plot(offsets.numpy(), mean[:, k], lw=0.8, color="0.6")
    ax.plot(offsets.numpy(), mean[:, target], lw=2.5, color="C3", label=class_names[target])
    rest = len(class_names) - 1 - len(others)
    if rest:
        ax.plot(
            offsets.numpy(),
            1 - mean[:, [target, *others]].sum(1),
            lw=0.8,
            color="0.3",
            ls="--",
            label=f"the other {rest} classes, summed",
        )
    (
        ax.set_xlabel("offset (σ of the dim)"),
        ax.set_ylabel("mean probability"),
        ax.set_ylim(-0.02, 1.02),
    )
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return fig


def dim_pull_bars(pull: Tensor, layout: BlockLayout, target: int, title: str, path: Path) -> Path:
    """pull (d,) -> one bar per latent dim: how much moving it changes the class's probability; the
    class's block red, the shared dims blue, every other dim grey (one figure at any width)."""
    plt = _plt()
    colors = [
        "C3"
        if layout.kind(j, target) == "own"
        else "C0"
        if layout.kind(j, target) == "shared"
        else "0.6"
        for j in range(len(pull))
    ]
    fig, ax = plt.subplots(figsize=(7.2, 2.2))
    ax.bar(range(len(pull)), pull.numpy(), color=colors, width=1.0 if len(pull) > 64 else 0.8)
    ax.set_xlabel("latent dim"), ax.set_ylabel("mean |Δ p(class)|"), ax.set_xlim(-1, len(pull))
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
