import math

import pytest
import torch
import torch.nn.functional as F

from herd_cls.benchmarking import curvature_cost as cc
from herd_cls.curvature import latent_hessian, method_names


@pytest.fixture(scope="module")
def heads8():
    torch.manual_seed(0)
    return cc.heads(8)


@pytest.mark.parametrize("name", ["MLP + CE", "MLP decoder + MSE", "block head + CE"])
def test_reference_hessian_agrees_with_the_exact_method(heads8, name):
    head, target, loss = heads8[name]
    z = torch.randn(cc.BATCH, 8)
    reference = cc.reference_hessian(head, z, target, loss).detach()
    assert reference.shape == (cc.BATCH, 8, 8)
    torch.testing.assert_close(reference, latent_hessian(head, z, target, loss, "exact").detach())


def test_plain_and_exact_steps_are_the_loss_and_the_hessian_mass(heads8):
    head, target, loss = heads8["MLP + CE"]
    z = torch.randn(cc.BATCH, 8, requires_grad=True)
    plain = cc.penalty_step("plain", head, target, loss, 8)(z)
    torch.testing.assert_close(plain, F.cross_entropy(head(z), target, reduction="sum"))
    exact = cc.penalty_step("exact", head, target, loss, 8)(z)
    torch.testing.assert_close(exact, cc.reference_hessian(head, z, target, loss).abs().sum())
    exact.backward()  # what training pays: the step is differentiable
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_methods_follow_the_head_loss_and_size():
    torch.manual_seed(0)
    small, large = cc.heads(8), cc.heads(64)
    listed = lambda heads, name, d: cc.methods(name, heads[name][0], heads[name][2], d)
    probes = method_names(probes=True)
    for name in small:
        assert listed(small, name, 8)[0] == "plain"
        assert listed(small, name, 8)[-len(probes) :] == probes
        assert ("masses" in listed(small, name, 8)) == (name == "block head + CE")
        assert ("gauss_newton" in listed(small, name, 8)) == name.endswith("MSE")
    assert "reference" in listed(small, "MLP + CE", 8)
    assert "reference" not in listed(large, "MLP + CE", 64)
    assert "exact" not in listed(large, "conv decoder + MSE", 64)  # beyond its EXACT_LIMIT
    assert "exact" in listed(large, "MLP decoder + MSE", 64)


def test_purity_error_is_small_where_the_probes_estimate_the_hessian(heads8):
    """hvp probes the exact Hessian everywhere; forward probes Gauss-Newton, which equals it on a
    linear head with CE and on a ReLU decoder with MSE (elsewhere it drops a term: no bound)."""
    for name, (head, target, loss) in heads8.items():
        assert 0 <= cc.purity_error(head, target, loss, 8, "hvp") < 0.05
    for name in ("linear + CE", "MLP decoder + MSE"):
        head, target, loss = heads8[name]
        assert 0 <= cc.purity_error(head, target, loss, 8, "forward") < 0.05
    head, target, loss = heads8["MLP + CE"]
    assert cc.purity_error(head, target, loss, 8, "exact") is None
    head, target, loss = cc.heads(128)["linear + CE"]
    assert cc.purity_error(head, target, loss, 128, "hvp") is None


def test_purity_error_leaves_the_global_generator_alone(heads8):
    head, target, loss = heads8["MLP + CE"]
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = cc.purity_error(head, target, loss, 8, "hvp")
    assert torch.equal(torch.rand(3), expected)
    assert cc.purity_error(head, target, loss, 8, "hvp") == first  # its own draws, every call


def test_costs_at_times_every_head_and_method_that_applies():
    only = ["linear + CE", "block head + CE", "MLP decoder + MSE"]
    torch.manual_seed(0)
    costs = cc.costs_at(8, repeats=1, memory=False, only=only)
    torch.manual_seed(0)
    heads = cc.heads(8)
    assert list(costs) == only
    for name, (plain, rows) in costs.items():
        head, _, loss = heads[name]
        assert plain > 0
        assert [c.method for c in rows] == cc.methods(name, head, loss, 8)[1:]
        assert all(c.peak_mb is None for c in rows)


@pytest.mark.slow
def test_peak_memory_of_a_step_grows_with_its_hessian():
    """A fresh process per cell: the exact Hessian of an MLP decoder at d = 16 holds tens of MB
    more than the forward probes of a linear head (docs/performance.md)."""
    exact = cc.peak_mb("MLP decoder + MSE", 16, "exact")
    assert math.isfinite(exact) and exact > cc.peak_mb("linear + CE", 16, "forward") + 20


def test_a_failed_memory_cell_says_which_and_why():
    with pytest.raises(RuntimeError, match="no-such-method on MLP \\+ CE at d=8"):
        cc.peak_mb("MLP + CE", 8, "no-such-method")
