"""Baseline regularizers against independent oracles: autograd Hessians, torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence
from torch.autograd.functional import hessian

from herd_cls.regularizers.hessian_penalty import hessian_penalty
from herd_cls.regularizers.vae import (
    FactorDiscriminator,
    gaussian_kl,
    permute_dims,
    total_correlation,
)


def _quadratic(A):
    """f(z) = z^T A z + sin-free linear part, per sample: its Hessian is A + A^T everywhere."""
    b = torch.arange(A.shape[0], dtype=A.dtype)
    return lambda z: ((z @ A) * z).sum(1, keepdim=True) + z @ b.unsqueeze(1)


def test_hessian_penalty_matches_the_off_diagonal_mass_of_the_autograd_hessian():
    torch.manual_seed(0)
    A = torch.randn(4, 4, dtype=torch.float64)
    fn = _quadratic(A)
    z = torch.randn(1, 4, dtype=torch.float64)
    H = hessian(lambda v: fn(v.unsqueeze(0)).sum(), z[0])
    # Var_v(v^T H v) over Rademacher v is 2 * sum_{i != j} H_ij^2; average many k=2 estimates
    expected = 2 * (H.pow(2).sum() - H.diagonal().pow(2).sum())
    estimates = torch.stack([hessian_penalty(fn, z, k=2, epsilon=0.1) for _ in range(4000)])
    assert estimates.mean().item() == pytest.approx(expected.item(), rel=0.05)


def test_hessian_penalty_is_zero_for_a_separable_function():
    fn = lambda z: (z.pow(3) + torch.cos(z)).sum(1, keepdim=True)  # diagonal Hessian
    z = torch.randn(8, 5, dtype=torch.float64)
    assert hessian_penalty(fn, z, k=4, epsilon=0.1).item() == pytest.approx(0.0, abs=1e-8)


def test_hessian_penalty_with_scale_cannot_be_cheated_by_rescaling_z():
    A = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    fn = _quadratic(A)
    z = torch.randn(3, 4, dtype=torch.float64)
    s = torch.tensor([10.0, 0.5, 3.0, 1.0], dtype=torch.float64)
    rescaled = lambda u: fn(u / s)  # the same map, fed z * s
    torch.manual_seed(5)
    plain = hessian_penalty(fn, z, k=4, scale=torch.ones(4, dtype=torch.float64))
    torch.manual_seed(5)
    assert hessian_penalty(rescaled, z * s, k=4, scale=s).item() == pytest.approx(
        plain.item(), rel=1e-6
    )
    torch.manual_seed(5)
    assert hessian_penalty(rescaled, z * s, k=4).item() < 0.5 * plain.item()  # unscaled: cheated


def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = torch.randn(6, 3), torch.randn(6, 3)
    oracle = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(gaussian_kl(mu, logvar), oracle, atol=1e-5)


def test_total_correlation_matches_mixture_densities():
    torch.manual_seed(1)
    B, d, N = 16, 3, 1000
    mu, logvar = (
        torch.randn(B, d, dtype=torch.float64),
        0.3 * torch.randn(B, d, dtype=torch.float64),
    )
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(B, d, dtype=torch.float64)
    uniform = Categorical(logits=torch.zeros(B, dtype=torch.float64))
    joint = MixtureSameFamily(uniform, Independent(Normal(mu, std), 1))
    marginals = [MixtureSameFamily(uniform, Normal(mu[:, k], std[:, k])) for k in range(d)]
    # minibatch-weighted sampling: every density is the batch mixture divided by the data set size N
    log_qz = joint.log_prob(z) - math.log(N)
    log_prod = sum(m.log_prob(z[:, k]) - math.log(N) for k, m in enumerate(marginals))
    assert total_correlation(z, mu, logvar, N).item() == pytest.approx(
        (log_qz - log_prod).mean().item(), rel=1e-9
    )


def test_permute_dims_keeps_marginals_and_breaks_dependence():
    torch.manual_seed(2)
    x = torch.randn(2000)
    z = torch.stack([x, x], 1)
    p = permute_dims(z)
    assert torch.equal(p[:, 0].sort().values, z[:, 0].sort().values)
    assert abs(torch.corrcoef(p.T)[0, 1]) < 0.1


def test_factor_discriminator_learns_to_see_correlation():
    torch.manual_seed(3)
    disc = FactorDiscriminator(2, hidden=32, layers=2)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    x = torch.randn(512)
    correlated = torch.stack([x, x + 0.05 * torch.randn(512)], 1)
    for _ in range(300):
        opt.zero_grad()
        disc.loss(correlated).backward()
        opt.step()
    assert disc.loss(correlated).item() < 0.3  # chance is log 2 = 0.69
    assert disc.total_correlation(correlated).item() > 1.0  # a clear positive TC estimate


def _orojar_oracle(fn, z, scale):
    """sum_{j != k} (J_j . J_k)^2 per sample with J from torch.autograd.functional.jacobian,
    averaged."""
    from torch.autograd.functional import jacobian

    out = []
    for zi in z:
        # (N, d), columns in units of scale
        J = jacobian(lambda v: fn(v.unsqueeze(0)).flatten(), zi) * scale
        gram = J.T @ J / J.shape[0]
        out.append(gram.pow(2).sum() - gram.diagonal().pow(2).sum())
    return torch.stack(out).mean()


def test_orojar_penalty_matches_the_autograd_jacobian():
    from herd_cls.regularizers.orojar import orojar_penalty

    torch.manual_seed(6)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 8)
    ).double()
    fn = lambda z: net(z).view(-1, 2, 4)
    z, scale = (
        torch.randn(5, 4, dtype=torch.float64),
        torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64),
    )
    got = orojar_penalty(fn, z, scale, eps=1e-7)
    assert got.item() == pytest.approx(_orojar_oracle(fn, z, scale).item(), rel=1e-5)


def test_orojar_penalty_is_zero_for_orthogonal_columns_and_not_otherwise():
    from herd_cls.regularizers.orojar import orojar_penalty

    z = torch.randn(3, 3, dtype=torch.float64)
    axis_aligned = lambda z: torch.stack([z[:, 0], 2 * z[:, 1], z[:, 2] ** 2], 1)
    assert orojar_penalty(axis_aligned, z, eps=1e-7).item() == pytest.approx(0.0, abs=1e-8)
    mixed = lambda z: torch.stack([z[:, 0] + z[:, 1], z[:, 1], z[:, 2]], 1)
    # J = [[1, 1, 0], [0, 1, 0], [0, 0, 1]]: J_0 . J_1 / 3 = 1 / 3, so the off-diagonal squares sum
    # to 2 / 9
    assert orojar_penalty(mixed, z, eps=1e-7).item() == pytest.approx(2.0 / 9, rel=1e-5)
