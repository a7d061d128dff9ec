"""Figures as PNG files (matplotlib with the Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..files import atomic_write
from ..layout import BlockLayout


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 90, tight: bool = True) -> Path:
    """Write ``fig`` as a PNG and close it; ``tight``: fit the margins first (a drawing pass, the
    slowest step of a small figure, so a figure drawn many times sets fixed margins instead)."""
    if tight:
        fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    _plt().close(fig)
    return path


def _show(ax, img: Tensor) -> None:
    img = img.permute(1, 2, 0).clamp(0, 1).numpy()
    ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([])


def training_curves(rows: list[dict], path: Path, title: str = "") -> Path:
    """Per-epoch accuracy, loss and block purity from metrics.jsonl rows."""
    plt = _plt()
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6))
    axes[0].plot(epochs, [r["train_accuracy"] for r in rows], label="train")
    axes[0].plot(epochs, [r["val_accuracy"] for r in rows], label="val")
    axes[0].set_title("accuracy", fontsize=9), axes[0].legend(fontsize=7)
    axes[1].plot(epochs, [r["train_loss"] for r in rows], label="train total")
    axes[1].plot(epochs, [r["val_ce"] for r in rows], label="val CE")
    axes[1].set_title("loss", fontsize=9), axes[1].legend(fontsize=7), axes[1].set_yscale("log")
    axes[2].plot(epochs, [r["val_block_purity"] for r in rows], color="C3")
    axes[2].set_title("Hessian block purity (val)", fontsize=9), axes[2].set_ylim(0, 1)
    for ax in axes:
        ax.set_xlabel("epoch", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _outline_blocks(
    ax, layout: BlockLayout, highlight: int | None = None, square: bool = True
) -> None:
    from matplotlib.patches import Rectangle

    for c in range(layout.num_classes):
        lo, n = int(layout.block(c)[0]), layout.dims_per_class
        color, lw = ("C3", 2.0) if c == highlight else ("white", 0.8)
        if square:
            ax.add_patch(Rectangle((lo - 0.5, lo - 0.5), n, n, fill=False, ec=color, lw=lw))
        else:
            ax.add_patch(Rectangle((lo - 0.5, c - 0.5), n, 1, fill=False, ec=color, lw=lw))


def _hessian_figure(hbar: Tensor, layout: BlockLayout, target: int, title: str):
    """The Figure of :func:`hessian_heatmap`: pixel (i, j) is dim pair (i, j), so dims lo..lo+n-1
    span [lo - 0.5, lo + n - 0.5] in data coordinates. Other class blocks: thin white; the target's
    own block: red on top; the shared dims (in no block): a dashed cyan square."""
    from matplotlib.patches import Rectangle

    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    im = ax.imshow(hbar.numpy(), cmap="magma")
    n = layout.dims_per_class
    for c in range(layout.num_classes):
        lo = int(layout.block(c)[0])
        ec, lw, z = ("red", 2.0, 4) if c == target else ("white", 0.8, 2)
        ax.add_patch(Rectangle((lo - 0.5, lo - 0.5), n, n, fill=False, ec=ec, lw=lw, zorder=z))
    if layout.shared_dims:
        lo, s = int(layout.shared[0]), layout.shared_dims
        ax.add_patch(
            Rectangle((lo - 0.5, lo - 0.5), s, s, fill=False, ec="cyan", lw=1.4, ls="--", zorder=3)
        )
    ax.set_title(title, fontsize=9), ax.set_ylabel("latent dim")
    ax.set_xlabel("latent dim (red: own block, dashed: shared dims)", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def hessian_heatmap(hbar: Tensor, layout: BlockLayout, target: int, title: str, path: Path) -> Path:
    """Mean |H| (d, d) of one class: its own block outlined in red, the shared dims dashed, the
    other class blocks in thin white."""
    return _save(_hessian_figure(hbar, layout, target, title), path)


LABELLED_CLASSES = 40  # above this many classes, figures drop per-class labels and legends


def class_dim_matrix(
    matrix: Tensor, layout: BlockLayout, class_names: list[str], title: str, path: Path
) -> Path:
    """A (K, d) class x latent-dim matrix (e.g. mean |attribution|), each row normalised, blocks
    outlined."""
    plt = _plt()
    m = matrix / matrix.max(1, keepdim=True).values.clamp_min(1e-12)
    # then one row a class, unlabelled, in a figure of bounded height
    many = m.shape[0] > LABELLED_CLASSES
    fig, ax = plt.subplots(
        figsize=(min(12, 1.5 + 0.3 * m.shape[1]), min(10.0, 0.9 + 0.3 * m.shape[0]))
    )
    ax.imshow(m.numpy(), cmap="viridis", aspect="auto", vmin=0, vmax=1, interpolation="nearest")
    if not many:
        _outline_blocks(ax, layout, square=False)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
    else:
        ax.set_ylabel(f"class (0..{m.shape[0] - 1})")
    if m.shape[1] <= 40:
        ax.set_xticks(range(m.shape[1]), [str(j) for j in range(m.shape[1])], fontsize=7)
    ax.set_xlabel("latent dim"), ax.set_title(title, fontsize=9)
    return _save(fig, path)


def embedding_scatter(
    points: Tensor, labels: Tensor, class_names: list[str], title: str, path: Path
) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    if len(class_names) <= LABELLED_CLASSES:
        for c, name in enumerate(class_names):
            p = points[labels == c]
            ax.scatter(p[:, 0], p[:, 1], s=6, label=name, color=plt.cm.tab10(c % 10))
        ax.legend(fontsize=6, markerscale=2, ncol=2)
    else:  # one call, colour by class, no legend: a thousand legend entries say nothing
        ax.scatter(points[:, 0], points[:, 1], s=4, c=labels.numpy() % 20, cmap="tab20")
    ax.set_xticks([]), ax.set_yticks([]), ax.set_title(title, fontsize=9)
    return _save(fig, path)


def attribution_overlays(images: Tensor, maps: Tensor, title: str, path: Path) -> Path:
    """Images (S, C, H, W) with |attribution| (S, C, H, W) as a heat overlay; the mean map first."""
    plt = _plt()
    heat = maps.abs().sum(1)
    n = len(images)
    fig, axes = plt.subplots(1, n + 1, figsize=(1.3 * (n + 1), 1.6), squeeze=False)
    axes[0, 0].imshow(heat.mean(0).numpy(), cmap="inferno")
    axes[0, 0].set_title("mean", fontsize=7)
    for i in range(n):
        img = images[i].permute(1, 2, 0).numpy()
        axes[0, i + 1].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
        axes[0, i + 1].imshow(heat[i].numpy(), cmap="inferno", alpha=0.55)
    for ax in axes[0]:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    return _save(fig, path)


def robustness_curves(result: dict, class_index: int | None, title: str, path: Path) -> Path:
    """Robust accuracy against eps, one line per attack (and the clean accuracy dashed).

    ``class_index`` None plots the overall accuracy; otherwise that class's.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.8, 2.8))
    clean = (
        result["clean"]["accuracy"]
        if class_index is None
        else result["clean"]["per_class"][class_index]
    )
    for i, (name, table) in enumerate(result["attacks"].items()):
        eps = sorted(table, key=float)
        acc = [
            table[e]["robust_accuracy"]
            if class_index is None
            else table[e]["per_class"][class_index]
            for e in eps
        ]
        ax.plot(
            [float(e) for e in eps],
            [a if a is not None else float("nan") for a in acc],
            marker="o",
            ms=3,
            label=name,
            color=f"C{i}",
        )
    if clean is not None:
        ax.axhline(clean, ls="--", color="0.5", lw=0.8, label="clean")
    (
        ax.set_xlabel("eps (pixels in [0, 1]; L2 norm for pgd-l2)", fontsize=7),
        ax.set_ylabel("accuracy"),
    )
    ax.set_ylim(-0.02, 1.02), ax.set_title(title, fontsize=9), ax.legend(fontsize=6)
    return _save(fig, path)


def gradient_norm_curves(result: dict, title: str, path: Path) -> Path:
    """Median per-image L2 norm of d margin / d x against eps, one line per attack, at the attacked
    images (the clean images' median dashed; the tiny threshold dotted). A masked model's lines sit
    at the bottom."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.8, 2.8))
    for i, (name, table) in enumerate(result["attacks"].items()):
        eps = sorted(table, key=float)
        ax.plot(
            [float(e) for e in eps],
            [max(table[e]["gradients"]["margin_median"], 1e-12) for e in eps],
            marker="o",
            ms=3,
            label=name,
            color=f"C{i}",
        )
    g = result["gradients"]
    ax.axhline(max(g["margin_median"], 1e-12), ls="--", color="0.5", lw=0.8, label="clean")
    ax.axhline(g["tiny"], ls=":", color="C3", lw=0.8, label="tiny")
    ax.set_yscale("log"), ax.set_xlabel("eps (pixels in [0, 1]; L2 norm for pgd-l2)", fontsize=7)
    (
        ax.set_ylabel("median |d margin / dx|", fontsize=8),
        ax.set_title(title, fontsize=9),
        ax.legend(fontsize=6),
    )
    return _save(fig, path)


def confusion_heatmap(confusion: list, class_names: list[str], title: str, path: Path) -> Path:
    """Where adversarial examples land: true class (rows) against adversarial prediction
    (columns)."""
    import numpy as np

    plt = _plt()
    m = np.asarray(confusion, dtype=float)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, fontsize=6)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=6)
    (
        ax.set_xlabel("adversarial prediction"),
        ax.set_ylabel("true class"),
        ax.set_title(title, fontsize=8),
    )
    return _save(fig, path)


def purity_histogram(
    shares: Tensor, chance: float, class_mean: float, title: str, path: Path
) -> Path:
    """Histogram of a class's per-image own-block shares (N,) in [0, 1], NaN dropped; the median
    (solid), the class-mean purity (dashed) and chance (dotted) marked."""
    plt = _plt()
    p = shares[~shares.isnan()].numpy()
    fig, ax = plt.subplots(figsize=(3.8, 2.6))
    ax.hist(p, bins=20, range=(0, 1), color="C0")
    if len(p):
        ax.axvline(
            float(shares[~shares.isnan()].median()), color="C0", lw=1.8, label="median image"
        )
    if class_mean == class_mean:
        ax.axvline(class_mean, color="C3", lw=1.5, ls="--", label="class mean")
    ax.axvline(chance, color="0.4", lw=1, ls=":", label="chance")
    ax.set_xlim(0, 1), ax.set_xlabel("own-block share of the image's |H|", fontsize=8)
    (
        ax.set_ylabel("images", fontsize=8),
        ax.set_title(title, fontsize=9),
        ax.legend(fontsize=6, loc="upper left"),
    )
    return _save(fig, path)


def block_effect_bars(effect: Tensor, own: int, title: str, path: Path) -> Path:
    """One class's row of the decoded block effect (K,): the mean image change when each block is
    swept, the class's own block in red."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(0.5 + 0.45 * len(effect), 2.4))
    ax.bar(
        range(len(effect)),
        effect.numpy(),
        color=["C3" if b == own else "0.6" for b in range(len(effect))],
    )
    ax.set_xticks(range(len(effect)), [f"B{b}" for b in range(len(effect))], fontsize=7)
    ax.set_xlabel("swept block", fontsize=8), ax.set_ylabel("mean |image change|", fontsize=8)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def carrier_strip(images: Tensor, captions: list[str], title: str, path: Path) -> Path:
    """Images (k, C, H, W) in a row, each with its caption below (a few short lines)."""
    plt = _plt()
    n = max(1, len(images))
    fig, axes = plt.subplots(1, n, figsize=(1.25 * n + 0.2, 2.5), squeeze=False)
    for i, ax in enumerate(axes[0]):
        if i < len(images):
            _show(ax, images[i])
            ax.set_xlabel(captions[i], fontsize=6, labelpad=2)
        else:
            ax.axis("off")
    fig.suptitle(title, fontsize=8)
    return _save(fig, path)


def decoder_hessian_heatmap(hbar: Tensor, layout: BlockLayout, title: str, path: Path) -> Path:
    """Mean |H| (d, d) of the reconstruction loss w.r.t. z, class blocks outlined in white, shared
    dims dashed."""
    return _save(_hessian_figure(hbar, layout, -1, title), path)
