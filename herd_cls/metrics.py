"""Class-specific disentanglement metrics: pure functions of tensors and arrays."""
from __future__ import annotations

import torch
from torch import Tensor

from .layout import BlockLayout
from .purity import own_share


def _share_in_blocks(weights: Tensor, labels: Tensor, layout: BlockLayout) -> Tensor:
    """Per class, the share of sum |weights_i| (rows of samples of that class) inside the class's block."""
    w = weights.abs().float()
    onehot = torch.nn.functional.one_hot(labels, layout.num_classes).to(w.dtype)
    inside = onehot.T @ (w * layout.own(labels)).sum(1)
    return own_share(inside, onehot.T @ w.sum(1), float("nan"))


def attribution_alignment(attributions: Tensor, labels: Tensor, layout: BlockLayout) -> dict:
    """Share of each sample's latent attribution of its true-class logit that falls in its block.

    Args:
        attributions: (N, d) attribution of the true-class logit to each latent dim.
        labels: (N,) classes; layout: the class blocks.
    Returns:
        {"attribution_alignment": mean over classes, "attribution_alignment_per_class": [K]};
        chance, for attribution spread evenly, is n / d.
    """
    per_class = _share_in_blocks(attributions, labels, layout)
    return {"attribution_alignment": float(torch.nanmean(per_class)),
            "attribution_alignment_per_class": per_class.tolist()}


def sweep_specificity(effect: Tensor) -> dict:
    """How much sweeping class c's block moves class c's output rather than other classes' outputs.

    Args:
        effect: (K, K); row c is the mean |change| of every class's logit when the dims of B_c are
            swept on samples of class c.
    Returns:
        {"sweep_specificity": mean over classes, "sweep_specificity_per_class": [K]} with
        specificity_c = effect[c, c] / sum_k effect[c, k]; 1 is perfectly specific, 1/K is chance.
    """
    effect = effect.abs()
    per_class = own_share(effect.diagonal(), effect.sum(1), float("nan"))
    return {"sweep_specificity": float(torch.nanmean(per_class)), "sweep_specificity_per_class": per_class.tolist()}


def latent_label_information(z: Tensor, labels: Tensor, num_classes: int, bins: int = 20) -> dict:
    """Mutual information (nats, scikit-learn) between each latent dim, in ``bins`` equal-width bins,
    and the label, and between each dim and each class indicator ``y == c``.

    Returns:
        {"mi_label": [d] I(z_j; y), at most log K; "mi_class": (K, d) nested lists I(z_j; y == c)}.
    """
    import numpy as np
    from sklearn.metrics import mutual_info_score

    z_np, y_np = z.detach().cpu().numpy(), labels.cpu().numpy()
    binned = [np.digitize(col, np.histogram_bin_edges(col, bins)[1:-1]) for col in z_np.T]
    return {"mi_label": [float(mutual_info_score(y_np, col)) for col in binned],
            "mi_class": [[float(mutual_info_score(y_np == c, col)) for col in binned] for c in range(num_classes)]}


def embedding_2d(z: Tensor, method: str = "pca", seed: int = 0) -> Tensor:
    """A 2-D embedding of latents (N, d) -> (N, 2) with PCA or t-SNE (scikit-learn)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = z.detach().cpu().numpy()
    if method == "pca":
        return torch.tensor(PCA(2, random_state=seed).fit_transform(x))
    if method == "tsne":
        return torch.tensor(TSNE(2, init="pca", random_state=seed, perplexity=min(30, len(x) - 1)).fit_transform(x))
    from .registry import HerdError

    raise HerdError(f"unknown embedding {method!r}; choose one of: pca, tsne")
