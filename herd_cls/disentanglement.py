"""Ground-truth disentanglement scores of a code z against known generative factors.

Every score takes plain arrays: ``z`` (N, d) and ``factors`` {name: (N,) float}, where NaN marks a
sample whose class does not have that factor (the ``shapes`` set records them so). The protocol
follows the literature: factors and codes are discretised into 20 equal-width bins for mutual
information; estimators are scikit-learn's; the scores that need "fix one factor" batches (beta-VAE,
FactorVAE) draw them from the data by conditioning on the factor's bin, so they work on any data
set, not only a simulator.

=====================  ===========================================  ===========================
score                  what it measures                             reference
=====================  ===========================================  ===========================
``mig``                gap between the two dims most informative     Chen et al. 2018
                       about a factor, over the factor's entropy
``dci``                disentanglement / completeness of a random    Eastwood & Williams 2018
                       forest's importance matrix; informativeness
                       = its test R^2
``sap``                gap in R^2 of the two dims best predicting     Kumar et al. 2018
                       a factor linearly
``beta_vae_score``     accuracy of a linear classifier naming the   Higgins et al. 2017
                       fixed factor from mean |z1 - z2| of pairs
``factor_vae_score``   accuracy of a majority vote naming the fixed  Kim & Mnih 2018
                       factor from the dim of least variance
=====================  ===========================================  ===========================

:func:`factor_scores` gives MIG, SAP and DCI under the metric registry's names;
:func:`disentanglement_scores` runs every score overall (factors every sample has, plus the class)
and per class (on that class's samples, with the factors that class has).
"""

from __future__ import annotations

import numpy as np

from .registry import HerdError

BINS = 20


# helpers


def _discretise(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """(N,) -> bin indices in [0, bins), equal-width; a column with at most ``bins`` distinct values
    (a discrete factor such as the class) keeps its own levels."""
    levels = np.unique(values)
    if len(levels) <= bins:
        return np.searchsorted(levels, values)
    return np.digitize(values, np.histogram_bin_edges(values, bins)[1:-1])


def _discretise_columns(x: np.ndarray) -> np.ndarray:
    """(N, k) -> (N, k) bin indices, column by column."""
    return np.stack([_discretise(col) for col in x.T], 1)


def _entropy(codes: np.ndarray) -> float:
    p = np.bincount(codes) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mutual_information(zb: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """(d, k) MI in nats between each binned code dim and each binned factor."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(b, f) for f in vb.T] for b in zb.T])


def _as_matrix(z, factors: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    z = np.asarray(z, dtype=np.float64)
    names = list(factors)
    if not names:
        raise HerdError("no factors to score against; the data set records none")
    v = np.stack([np.asarray(factors[k], dtype=np.float64) for k in names], 1)
    if z.ndim != 2 or len(z) != len(v):
        raise HerdError(
            f"z must be (N, d) with one row per factor row; got {z.shape} and {len(v)} rows"
        )
    if np.isnan(v).any():
        raise HerdError(
            "factors contain NaN; score per class with disentanglement_scores, which drops them"
        )
    return z, v, names


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1 - test_fraction)))
    return order[:cut], order[cut:]


def _fixed_factor_batches(
    v_binned: np.ndarray, k: int, count: int, size: int, rng
) -> list[np.ndarray]:
    """``count`` index batches of ``size`` samples that share factor k's bin (others vary
    freely)."""
    levels, counts = np.unique(v_binned[:, k], return_counts=True)
    levels = levels[counts >= 2]
    batches = []
    for _ in range(count):
        pool = np.flatnonzero(v_binned[:, k] == rng.choice(levels))
        batches.append(rng.choice(pool, size, replace=len(pool) < size))
    return batches


def _gap_score(scores: np.ndarray, norm: np.ndarray | None = None) -> float:
    """Mean over factors of (best - second best) over dims of a (d, k) score matrix."""
    if scores.shape[0] < 2:
        raise HerdError("a gap score needs a code of at least 2 dims")
    top = np.sort(scores, axis=0)[::-1]
    gap = top[0] - top[1]
    if norm is not None:
        gap = np.where(norm > 0, gap / np.where(norm > 0, norm, 1), 0.0)
    return float(np.mean(gap))


# public API


def mig(z, factors: dict) -> float:
    """Mutual Information Gap in [0, 1]: per factor, (I(z_a; v) - I(z_b; v)) / H(v) for the two most
    informative dims a, b; averaged over factors."""
    z, v, _ = _as_matrix(z, factors)
    vb = _discretise_columns(v)
    mi = _mutual_information(_discretise_columns(z), vb)
    entropy = np.array([_entropy(col) for col in vb.T])
    return _gap_score(mi, entropy)


def dim_factors(z, factors: dict) -> list[tuple[str, float]]:
    """Per code dim, the factor it is most informative about and that normalised mutual information
    I(z_j; v) / H(v) in [0, 1] (MIG's matrix, read along the dims)."""
    z, v, names = _as_matrix(z, factors)
    vb = _discretise_columns(v)
    entropy = np.array([_entropy(col) for col in vb.T])
    mi = _mutual_information(_discretise_columns(z), vb) / np.where(entropy > 0, entropy, 1)
    return [(names[int(row.argmax())], float(row.max())) for row in mi]


def dci(z, factors: dict, test_fraction: float = 0.33, seed: int = 0, trees: int = 50) -> dict:
    """DCI with random-forest regressors (one per standardised factor).

    Returns:
        {"disentanglement", "completeness", "informativeness"} in [0, 1]: D weights each dim's
        1 - entropy (base k) of its importance row by the dim's share of importance (NaN for a
        single factor); C is the same per factor column (base d); I is the mean test R^2, clipped at
        0.
    """
    from sklearn.ensemble import RandomForestRegressor

    z, v, _ = _as_matrix(z, factors)
    d, k = z.shape[1], v.shape[1]
    train, test = _split(len(z), test_fraction, seed)
    importance, r2 = np.zeros((d, k)), []
    for j in range(k):
        target = (v[:, j] - v[:, j].mean()) / (v[:, j].std() or 1.0)
        forest = RandomForestRegressor(trees, max_depth=8, random_state=seed, n_jobs=1)
        forest.fit(z[train], target[train])
        importance[:, j] = forest.feature_importances_
        r2.append(max(0.0, forest.score(z[test], target[test])))

    def one_minus_entropy(p: np.ndarray, base: int) -> np.ndarray:
        p = p / np.clip(p.sum(1, keepdims=True), 1e-12, None)
        return 1.0 + (p * np.log(np.clip(p, 1e-12, None)) / np.log(base)).sum(1)

    total = importance.sum()
    dim_weight = importance.sum(1) / total if total > 0 else np.full(d, 1 / d)
    factor_weight = importance.sum(0) / total if total > 0 else np.full(k, 1 / k)
    disentanglement = (
        float((one_minus_entropy(importance, k) * dim_weight).sum()) if k > 1 else float("nan")
    )
    return {
        "disentanglement": disentanglement,
        "completeness": float((one_minus_entropy(importance.T, d) * factor_weight).sum()),
        "informativeness": float(np.mean(r2)),
    }


def sap(z, factors: dict, test_fraction: float = 0.33, seed: int = 0) -> float:
    """Separated Attribute Predictability: per factor, the gap in test R^2 between the two dims that
    best predict it with a one-dim linear fit (continuous-factor SAP); averaged over factors."""
    z, v, _ = _as_matrix(z, factors)
    train, test = _split(len(z), test_fraction, seed)
    scores = np.zeros((z.shape[1], v.shape[1]))
    for i in range(z.shape[1]):
        for j in range(v.shape[1]):
            a, b = (
                np.polyfit(z[train, i], v[train, j], 1)
                if z[train, i].std() > 0
                else (0.0, v[train, j].mean())
            )
            resid = v[test, j] - (a * z[test, i] + b)
            var = v[test, j].var()
            scores[i, j] = max(0.0, 1 - resid.var() / var) if var > 0 else 0.0
    return _gap_score(scores)


def beta_vae_score(
    z, factors: dict, batches: int = 500, batch_size: int = 64, seed: int = 0
) -> float:
    """Higgins et al.: held-out accuracy of a logistic regression that names the fixed factor from
    the mean |z1 - z2| over ``batch_size`` pairs sharing that factor's bin. Chance is 1 /
    #factors."""
    from sklearn.linear_model import LogisticRegression

    z, v, _ = _as_matrix(z, factors)
    if v.shape[1] < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    zs = z / np.clip(z.std(0), 1e-8, None)
    vb = _discretise_columns(v)
    features, targets = [], []
    for _ in range(batches):
        k = rng.integers(v.shape[1])
        (idx,) = _fixed_factor_batches(vb, k, 1, 2 * batch_size, rng)
        features.append(np.abs(zs[idx[:batch_size]] - zs[idx[batch_size:]]).mean(0))
        targets.append(k)
    features, targets = np.array(features), np.array(targets)
    half = batches // 2
    clf = LogisticRegression(max_iter=2000).fit(features[:half], targets[:half])
    return float(clf.score(features[half:], targets[half:]))


def factor_vae_score(
    z, factors: dict, batches: int = 500, batch_size: int = 64, seed: int = 0
) -> float:
    """Kim & Mnih: normalise each dim by its std over the data, take the dim of least variance in a
    batch sharing factor k's bin, and score a majority-vote classifier dim -> factor on held-out
    batches. Dims that barely vary over the data (std < 5% of the largest) are ignored, as in the
    paper. NaN for a single factor."""
    z, v, _ = _as_matrix(z, factors)
    if v.shape[1] < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    std = z.std(0)
    active = std > 0.05 * std.max() if std.max() > 0 else np.ones(z.shape[1], bool)
    zs = z[:, active] / std[active]
    vb = _discretise_columns(v)
    votes = np.zeros((2, zs.shape[1], v.shape[1]), dtype=int)
    for b in range(batches):
        k = rng.integers(v.shape[1])
        (idx,) = _fixed_factor_batches(vb, k, 1, batch_size, rng)
        votes[b % 2, np.argmin(zs[idx].var(0)), k] += 1
    train, test = votes
    return float(test[np.arange(len(test)), train.argmax(1)].sum() / max(test.sum(), 1))


def factor_scores(z, factors: dict, seed: int = 0) -> dict[str, float]:
    """MIG, SAP and DCI (``dci_disentanglement``, ``dci_completeness``, ``dci_informativeness``) of
    z against the factors: the factor scores under the names the metric registry gives them."""
    dci_scores = dci(z, factors, seed=seed)
    return {
        "mig": mig(z, factors),
        "sap": sap(z, factors, seed=seed),
        **{f"dci_{k}": v for k, v in dci_scores.items()},
    }


def disentanglement_scores(
    z,
    factors: dict,
    labels,
    class_names: list[str] | None = None,
    min_samples: int = 50,
    seed: int = 0,
    blocks: list | None = None,
) -> dict:
    """All scores, overall and per class.

    Overall uses the factors every sample has plus the class itself as a factor. Per class c uses
    c's samples and the factors c has (not NaN, not constant on c), so a class-specific factor is
    scored only where it exists. Classes with fewer than ``min_samples`` samples or no factor are
    skipped (absent from ``per_class``). With ``blocks`` (per class, the latent dims it owns: a
    boolean (d,) mask or a list of indices), each class also scores ``mig_own_block``: MIG on its
    samples and factors over its own dims only, so a class whose factors live in its block scores
    as high as over all dims.

    Returns:
        {"overall": {score: value}, "per_class": {name: {score: value, "factors": [...]}},
         "class_mean": {score: mean over scored classes}}
    """
    z = np.asarray(z, dtype=np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    names = class_names or [str(c) for c in range(int(classes.max()) + 1)]
    full = {k: np.asarray(f, dtype=np.float64) for k, f in factors.items()}

    def all_scores(zz, ff) -> dict:
        return {
            **factor_scores(zz, ff, seed),
            "beta_vae": beta_vae_score(zz, ff, seed=seed),
            "factor_vae": factor_vae_score(zz, ff, seed=seed),
        }

    common = {k: f for k, f in full.items() if not np.isnan(f).any()}
    overall = all_scores(z, {**common, "class": labels.astype(np.float64)})
    per_class = {}
    for c in classes:
        rows = labels == c
        own = {
            k: f[rows]
            for k, f in full.items()
            if not np.isnan(f[rows]).any() and np.ptp(f[rows]) > 0
        }
        if rows.sum() < min_samples or not own:
            continue
        scores = all_scores(z[rows], own)
        if blocks is not None:
            scores["mig_own_block"] = mig(z[rows][:, np.asarray(blocks[int(c)])], own)
        per_class[names[int(c)]] = {**scores, "factors": list(own)}
    keys = list(overall)
    class_mean = (
        {k: float(np.nanmean([s[k] for s in per_class.values()])) for k in keys}
        if per_class
        else {}
    )
    return {"overall": overall, "per_class": per_class, "class_mean": class_mean}
