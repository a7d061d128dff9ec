"""The decoder's own curvature (herd_cls.decoder_curvature) against per-sample
torch.autograd.functional.hessian."""

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian

from herd_cls import decoder_curvature as dc
from herd_cls.registry import HerdError

SCALE = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.double)
OWN = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)


def _decoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 3)
    ).double()


def _z() -> torch.Tensor:
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.double)


def _oracle_units(fn, z: torch.Tensor, units: int) -> torch.Tensor:
    """(B, units, d, d): unit u's Hessian at image i, z in units of SCALE, one
    autograd.functional.hessian each."""
    return torch.stack(
        [
            torch.stack(
                [
                    hessian(lambda v: fn((v * SCALE).unsqueeze(0))[0, u], z[i] / SCALE)
                    for u in range(units)
                ]
            )
            for i in range(len(z))
        ]
    )


def test_exact_hessians_of_the_output_and_of_hidden_layers_match_the_oracle():
    dec, z = _decoder(), _z()
    (out,) = dc.exact_hessians(dec, z, "output", SCALE)
    assert torch.allclose(out, _oracle_units(dec, z, 3), atol=1e-10)
    tanh, gelu = dc.exact_hessians(dec, z, "hidden", SCALE)
    assert torch.allclose(tanh, _oracle_units(dec[:2], z, 6), atol=1e-10)
    assert torch.allclose(gelu, _oracle_units(dec[:4], z, 5), atol=1e-10)
    assert len(dc.exact_hessians(dec, z, "all", SCALE)) == 3


def test_shares_by_hand_from_the_oracle():
    dec, z = _decoder(), _z()
    H = _oracle_units(dec, z, 3)
    sq = H.pow(2)
    off = (sq.sum((1, 2, 3)) - torch.diagonal(sq, dim1=2, dim2=3).sum((1, 2))) / sq.sum((1, 2, 3))
    inside = torch.stack([sq[i][:, OWN[i]][:, :, OWN[i]].sum() for i in range(3)]) / sq.sum(
        (1, 2, 3)
    )
    assert torch.allclose(dc.curvature_shares(dec, z, "output", SCALE, method="exact"), off)
    assert torch.allclose(dc.curvature_shares(dec, z, "output", SCALE, OWN, method="exact"), inside)


@pytest.mark.parametrize("layers", dc.LAYERS.names(sort=False))
@pytest.mark.parametrize("own", [None, OWN])
def test_the_forward_estimate_converges_to_the_exact_shares(layers, own):
    dec, z = _decoder(), _z()
    with torch.no_grad():
        exact = dc.curvature_shares(dec, z, layers, SCALE, own, method="exact")
        estimate = dc.curvature_shares(
            dec,
            z,
            layers,
            SCALE,
            own,
            "forward",
            probes=20000,
            eps=1e-3,
            generator=torch.Generator().manual_seed(0),
        )
    assert torch.allclose(estimate, exact, atol=0.02)


def test_rescaling_a_latent_dim_changes_nothing_in_std_units():
    dec, z = _decoder(), _z()
    stretch = torch.tensor([10.0, 1.0, 0.1, 1.0], dtype=torch.double)
    # the same decoder reading z stretched per dim
    stretched = lambda v: dec(v / stretch)
    base = dc.curvature_shares(dec, z, "output", z.std(0), method="exact")
    assert torch.allclose(
        dc.curvature_shares(stretched, z * stretch, "output", (z * stretch).std(0), method="exact"),
        base,
    )
    # in raw units the stretched decoder's curvature is dominated by the shrunk dim: a different
    # share
    assert not torch.allclose(
        dc.curvature_shares(stretched, z * stretch, "output", method="exact"),
        dc.curvature_shares(dec, z, "output", method="exact"),
        atol=1e-3,
    )


def test_an_additive_decoder_has_no_off_diagonal_curvature_and_a_product_has_little_else():
    z = _z()
    additive = lambda v: torch.stack([v[:, 0] ** 2 + torch.sin(v[:, 1]), v[:, 2] ** 3], 1)
    product = lambda v: (v[:, 0] * v[:, 1]).unsqueeze(1)
    assert torch.allclose(
        dc.curvature_shares(additive, z, method="exact"), torch.zeros(3, dtype=torch.double)
    )
    assert torch.allclose(
        dc.curvature_shares(product, z, method="exact"), torch.ones(3, dtype=torch.double)
    )
    # the forward estimate sees the same, up to its probe noise
    est = dc.curvature_shares(
        additive, z, probes=64, eps=1e-3, generator=torch.Generator().manual_seed(0)
    )
    assert float(est.max()) < 0.05


def test_gradients_reach_the_decoder_through_both_methods():
    for method in dc.METHODS.names(sort=False):
        dec, z = _decoder(), _z()
        dc.curvature_shares(
            dec, z, "all", SCALE, method=method, generator=torch.Generator().manual_seed(0)
        ).mean().backward()
        assert all(
            p.grad is not None and p.grad.abs().sum() > 0 for p in dec.parameters() if p.dim() == 2
        )


def test_bad_choices_are_one_clear_error():
    dec, z = _decoder(), _z()
    with pytest.raises(
        HerdError, match="unknown decoder layers 'middle'; choose one of: all, hidden, output"
    ):
        dc.curvature_shares(dec, z, "middle")
    with pytest.raises(HerdError, match="at least 2 probes"):
        dc.curvature_shares(dec, z, probes=1)
    with pytest.raises(HerdError, match="needs activation modules"):
        dc.curvature_shares(lambda v: v**2, z, "hidden")


def test_standard_error_by_hand():
    assert dc.standard_error(torch.tensor([0.1, 0.3, 0.5, 0.7])) == pytest.approx(0.2581989 / 2)
