"""The VAE family on a variational bottleneck: beta-VAE, beta-VAE with annealed capacity, FactorVAE
and beta-TCVAE. The KL terms are per sample in nats; the trainer's reconstruction loss is a
per-pixel mean, so each term is divided by the pixel count, which keeps the ELBO's balance (with
``--recon-loss bce`` the objective is the ELBO's, scaled by 1 / pixels)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..options import option
from .base import REGULARIZERS, Regularizer


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
        """Cross-entropy telling z (label 0) from its dim-wise permutation (label 1); z is
        detached."""
        z = z.detach()
        both = torch.cat([z, permute_dims(z)])
        target = torch.cat([torch.zeros(len(z)), torch.ones(len(z))]).long().to(z.device)
        return F.cross_entropy(self(both), target)


class _VAERegularizer(Regularizer):
    """A KL-based term on q(z | x); ``loss`` logs the KL per pixel and adds ``term(kl, batch)``."""

    needs_decoder = True
    variational = True
    family = "VAE (a KL term on q(z | x))"

    def loss(self, model, batch):
        pixels = batch.x[0].numel()
        kl = gaussian_kl(batch.mu, batch.logvar).mean()
        return kl / pixels, self.term(kl, batch) / pixels

    def term(self, kl: Tensor, batch) -> Tensor:
        raise NotImplementedError


@REGULARIZERS.add
class BetaVAE(_VAERegularizer):
    name = "beta-vae"
    help = "beta-VAE: beta * KL (Higgins et al. 2017)"
    default_weight = 4.0

    def term(self, kl, batch):
        return self.weight * kl


@dataclass
class CapacityOptions:
    """The option of ``--reg beta-vae-capacity``."""

    capacity: float = option(
        25.0,
        "KL capacity in nats that beta-vae-capacity anneals to, linearly over the epochs.",
        bound="non-negative",
    )


@REGULARIZERS.add
class BetaVAECapacity(_VAERegularizer):
    name = "beta-vae-capacity"
    help = "beta-VAE with a KL capacity annealed to --capacity (Burgess et al. 2018)"
    default_weight = 1000.0

    Options = CapacityOptions
    capacity = 0.0  # nats, raised every epoch

    def start_epoch(self, epoch):
        self.capacity = self.options.capacity * min(1.0, epoch / max(1, self.cfg.epochs - 1))

    def term(self, kl, batch):
        return self.weight * (kl - self.capacity).abs()


@REGULARIZERS.add
class FactorVAE(_VAERegularizer):
    name = "factor-vae"
    help = "FactorVAE: KL + gamma * a discriminator's TC estimate (Kim & Mnih 2018)"
    default_weight = 10.0

    def __init__(self, cfg, model, dataset_size, reduce=None):
        super().__init__(cfg, model, dataset_size, reduce)
        self.discriminator = FactorDiscriminator(model.latent_dim)
        # the paper's discriminator optimiser: Adam, lr 1e-4, betas (0.5, 0.9)
        self.optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=1e-4, betas=(0.5, 0.9)
        )

    def term(self, kl, batch):
        return kl + self.weight * self.discriminator.total_correlation(batch.z)

    def after_step(self, batch):
        self.optimizer.zero_grad(set_to_none=True)
        self.discriminator.loss(batch.z.float()).backward()
        self.optimizer.step()

    def to(self, device):
        self.discriminator.to(device)
        return self

    def state_dict(self):
        return {
            "discriminator": self.discriminator.state_dict(),
            "discriminator_optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state):
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["discriminator_optimizer"])


@REGULARIZERS.add
class BetaTCVAE(_VAERegularizer):
    name = "beta-tcvae"
    help = "beta-TCVAE: KL + (beta - 1) * TC, minibatch-weighted sampling (Chen et al. 2018)"
    default_weight = 6.0

    def term(self, kl, batch):  # the decomposition with alpha = gamma = 1
        return kl + (self.weight - 1) * total_correlation(
            batch.z, batch.mu, batch.logvar, self.dataset_size
        )
