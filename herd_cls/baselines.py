"""Baseline regularizers to compare HeRD against: the Hessian Penalty and the VAE family.

Pure functions of tensors (plus the FactorVAE discriminator), usable from any training loop like
:mod:`herd_cls.regularizer`. The VAE terms are per sample in nats; a trainer that averages its
reconstruction loss over pixels divides them by the pixel count to keep the ELBO's balance.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def hessian_penalty(fn: Callable[[Tensor], Tensor], z: Tensor, k: int = 2, epsilon: float = 0.1,
                    reduction: Callable[[Tensor], Tensor] = torch.max, scale: Tensor | None = None) -> Tensor:
    """The Hessian Penalty (Peebles et al. 2020): the variance, over ``k`` Rademacher directions v,
    of the central second difference (fn(z + eps v) - 2 fn(z) + fn(z - eps v)) / eps^2, which
    estimates v^T H v for every output element; reduced (max, as in the paper) over elements.

    Its expectation is 2 * the sum of squared off-diagonal Hessian entries of each output w.r.t. z.
    ``scale`` (d,) measures z in those units (probes ``eps * scale * v``): the paper's z comes from a
    unit prior, an encoder's z does not, and without it an encoder could shrink the penalty by
    merely scaling z up (and the decoder's first layer down).
    """
    center = fn(z)
    unit = torch.ones_like(z[0]) if scale is None else scale
    second = []
    for _ in range(k):
        v = epsilon * unit * (torch.randint(0, 2, z.shape, device=z.device).to(z.dtype) * 2 - 1)
        second.append((fn(z + v) - 2 * center + fn(z - v)) / epsilon ** 2)
    return reduction(torch.stack(second).var(0, unbiased=True))


def reparameterise(mu: Tensor, logvar: Tensor) -> Tensor:
    """A sample z ~ N(mu, exp(logvar)) that gradients flow through."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, (B, d) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def _log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z_i | mu_j, exp(logvar_j)) per dim for every pair (i, j): (B, B, d)."""
    z, mu, logvar = z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0)
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def total_correlation(z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int) -> Tensor:
    """beta-TCVAE's minibatch-weighted-sampling estimate of TC(z) = KL(q(z) || prod_j q(z_j)),
    averaged over the batch (Chen et al. 2018)."""
    log_qz_pairs = _log_density(z, mu, logvar)
    norm = math.log(len(z) * dataset_size)
    log_qz = torch.logsumexp(log_qz_pairs.sum(2), 1) - norm
    log_prod_qzj = (torch.logsumexp(log_qz_pairs, 1) - norm).sum(1)
    return (log_qz - log_prod_qzj).mean()


def permute_dims(z: Tensor) -> Tensor:
    """Shuffle every latent dim independently across the batch: samples of prod_j q(z_j)."""
    return torch.stack([col[torch.randperm(len(z), device=z.device)] for col in z.T], 1)


class FactorDiscriminator(nn.Module):
    """FactorVAE's discriminator: z -> 2 logits (0: from q(z), 1: from prod_j q(z_j)); by default
    the paper's 6 hidden layers of 1000 LeakyReLU(0.2) units (Kim & Mnih 2018)."""

    def __init__(self, latent_dim: int, hidden: int = 1000, layers: int = 6):
        super().__init__()
        mods, width = [], latent_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.net = nn.Sequential(*mods, nn.Linear(width, 2))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

    def total_correlation(self, z: Tensor) -> Tensor:
        """The density-ratio estimate of TC: mean of logit_0 - logit_1 (gradient flows into z)."""
        logits = self(z)
        return (logits[:, 0] - logits[:, 1]).mean()

    def loss(self, z: Tensor) -> Tensor:
        """Cross-entropy telling z (label 0) from its dim-wise permutation (label 1); z is detached."""
        z = z.detach()
        both = torch.cat([z, permute_dims(z)])
        target = torch.cat([torch.zeros(len(z)), torch.ones(len(z))]).long().to(z.device)
        return F.cross_entropy(self(both), target)
