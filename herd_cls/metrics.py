"""Class-specific disentanglement metrics: pure functions of tensors and arrays."""

from __future__ import annotations

import torch
from torch import Tensor

from .layout import BlockLayout
from .purity import own_share


def _share_in_blocks(weights: Tensor, labels: Tensor, layout: BlockLayout) -> Tensor:
    """Per class, the share of sum |weights_i| (rows of samples of that class) inside the class's
    block."""
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
    return {
        "attribution_alignment": float(torch.nanmean(per_class)),
        "attribution_alignment_per_class": per_class.tolist(),
    }


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
    return {
        "sweep_specificity": float(torch.nanmean(per_class)),
        "sweep_specificity_per_class": per_class.tolist(),
    }


def block_energy(z: Tensor, layout: BlockLayout) -> Tensor:
    """(N, K) each image's activation energy in every class block: sum over the block's dims of the
    squared standardised value ((z_j - mean_j) / std_j)^2, mean and std over the N images, so that
    no dim's offset or scale counts (a constant dim counts 0)."""
    z = z.detach().float()
    standard = (z - z.mean(0)) / z.std(0).where(z.std(0) > 0, torch.ones(()))
    n, k = layout.dims_per_class, layout.num_classes
    return standard[:, : k * n].pow(2).view(len(z), k, n).sum(2)


def concept_purity(scores: Tensor, labels: Tensor) -> dict:
    """Concept Whitening's concept purity with the classes as concepts: per class c, the one-vs-rest
    ROC AUC of ``scores[:, c]`` (N, K) telling the images of class c from all others (1: every image
    of c scores above every other image; 0.5: chance). NaN for a class without images, or without
    others, or with a NaN score.

    Returns:
        {"concept_purity": mean over the measured classes, "concept_purity_per_class": [K]}.
    """
    from sklearn.metrics import roc_auc_score

    scores, labels = scores.detach().cpu().double().numpy(), labels.cpu().numpy()
    per_class = []
    for c in range(scores.shape[1]):
        is_c, column = labels == c, scores[:, c]
        measurable = 0 < is_c.sum() < len(is_c) and not (column != column).any()
        per_class.append(float(roc_auc_score(is_c, column)) if measurable else float("nan"))
    measured = [v for v in per_class if v == v]
    return {
        "concept_purity": sum(measured) / len(measured) if measured else float("nan"),
        "concept_purity_per_class": per_class,
    }


def latent_label_information(z: Tensor, labels: Tensor, num_classes: int, bins: int = 20) -> dict:
    """Mutual information (nats) between each latent dim, in ``bins`` equal-width bins, and the
    label, and between each dim and each class indicator ``y == c``, from one (bins, K) contingency
    table per dim, so the cost grows with d, not with K x d (the definition of scikit-learn's
    ``mutual_info_score``).

    Returns:
        {"mi_label": [d] I(z_j; y), at most log K; "mi_class": (K, d) nested lists I(z_j; y == c)}.
    """
    import numpy as np

    z_np, y_np = z.detach().cpu().numpy(), labels.cpu().numpy().astype(np.int64)
    n, k = len(y_np), num_classes
    p_class = np.bincount(y_np, minlength=k) / n  # (K,)
    mi_label, mi_class = [], []
    for col in z_np.T:
        b = np.digitize(col, np.histogram_bin_edges(col, bins)[1:-1])
        joint = np.bincount(b * k + y_np, minlength=bins * k).reshape(bins, k) / n  # p(bin, class)
        p_bin = joint.sum(1, keepdims=True)  # (bins, 1)
        mi_label.append(float(_plogp_ratio(joint, p_bin * p_class).sum()))
        rest = p_bin - joint  # p(bin, not class)
        mi_class.append(
            _plogp_ratio(joint, p_bin * p_class).sum(0)
            + _plogp_ratio(rest, p_bin * (1 - p_class)).sum(0)
        )
    return {"mi_label": mi_label, "mi_class": np.stack(mi_class, 1).tolist()}


def _plogp_ratio(p, q):
    """p log(p / q) elementwise, 0 where p is 0."""
    import numpy as np

    out = np.zeros_like(p)
    np.divide(p, q, out=out, where=p > 0)
    return np.where(p > 0, p * np.log(np.where(p > 0, out, 1.0)), 0.0)


def embedding_2d(z: Tensor, method: str = "pca", seed: int = 0) -> Tensor:
    """A 2-D embedding of latents (N, d) -> (N, 2) with PCA or t-SNE (scikit-learn)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = z.detach().cpu().numpy()
    if method == "pca":
        return torch.tensor(PCA(2, random_state=seed).fit_transform(x))
    if method == "tsne":
        return torch.tensor(
            TSNE(2, init="pca", random_state=seed, perplexity=min(30, len(x) - 1)).fit_transform(x)
        )
    from .registry import HerdError

    raise HerdError(f"unknown embedding {method!r}; choose one of: pca, tsne")
