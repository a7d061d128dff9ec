"""Every curvature path against an independent oracle: per-sample torch.autograd.functional.hessian,
and for Gauss-Newton an explicitly built J^T M J."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import jacobian

from herd_cls.curvature import (
    block_mass,
    forward_block_mass,
    forward_gauss_newton,
    hessian_block_mass,
    latent_hessian,
    sum_losses,
)
from herd_cls.losses import per_sample_loss
from herd_cls.heads import BlockHead
from herd_cls.registry import HerdError
from herd_cls.layout import BlockLayout
from herd_cls.regularizers.herd import HeRD

# float64 is an autouse fixture
from toy_heads import CASES, decoder, float64, mlp, oracle  # noqa: F401


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["auto", "exact"])
def test_latent_hessian_matches_oracle(case, method):
    torch.manual_seed(0)
    head, target, loss = CASES[case]()
    z = torch.randn(6, 5)
    H = latent_hessian(head, z, target, loss, method)
    assert H.shape == (6, 5, 5)
    torch.testing.assert_close(H, oracle(head, z, target, loss), rtol=1e-7, atol=1e-9)


def test_closed_form_equals_oracle_and_exact():
    torch.manual_seed(1)
    head, y, z = nn.Linear(5, 4), torch.randint(0, 4, (6,)), torch.randn(6, 5)
    H = latent_hessian(head, z, y, "ce", "closed_form")
    torch.testing.assert_close(H, oracle(head, z, y, "ce"))
    torch.testing.assert_close(H, latent_hessian(head, z, y, "ce", "exact"))


@pytest.mark.parametrize(
    "loss", ["ce", lambda out, y: F.cross_entropy(out, y, reduction="none") ** 2]
)
def test_block_head_closed_form_equals_oracle_with_shared_dims(loss):
    """The block head's closed form (GELU derivatives, Gauss-Newton and residual scattered onto
    blocks that share dims) against per-sample autograd Hessians, for cross-entropy and for another
    loss of the logits."""
    torch.manual_seed(7)
    head = BlockHead(BlockLayout(num_classes=4, dims_per_class=2, shared_dims=2), hidden=5)
    z, y = torch.randn(6, 10) * 2, torch.randint(0, 4, (6,))
    H = latent_hessian(head, z, y, loss, "closed_form")
    assert latent_hessian(head, z, y, loss, "auto").equal(H)
    torch.testing.assert_close(H, oracle(head, z, y, loss), rtol=1e-7, atol=1e-9)


def test_block_head_closed_form_is_differentiable_like_exact():
    """The penalty's gradient reaches the encoder (through z) and the head's weights as exact
    Hessians' does."""
    torch.manual_seed(8)
    head = BlockHead(BlockLayout(num_classes=3, dims_per_class=2, shared_dims=1), hidden=4)
    z, y = torch.randn(5, 7, requires_grad=True), torch.randint(0, 3, (5,))
    grads = [
        torch.autograd.grad(latent_hessian(head, z, y, "ce", m).abs().sum(), [z, head.w1])
        for m in ("closed_form", "exact")
    ]
    for closed, exact in zip(*grads):
        torch.testing.assert_close(closed, exact)


def test_gauss_newton_exact_for_relu_decoder():
    torch.manual_seed(2)
    head = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10))
    z, x = torch.randn(5, 4), torch.randn(5, 10)
    torch.testing.assert_close(
        latent_hessian(head, z, x, "mse", "gauss_newton"), oracle(head, z, x, "mse")
    )


def test_gauss_newton_differs_from_exact_for_sigmoid_decoder():
    torch.manual_seed(3)
    head, x, _ = CASES["sigmoid-mse"]()
    z = torch.randn(6, 5)
    gn = latent_hessian(head, z, x, "mse", "gauss_newton")
    assert not torch.allclose(gn, oracle(head, z, x, "mse"), atol=1e-6)


def test_callable_loss_and_sum_of_hessians():
    torch.manual_seed(4)
    cls_head, dec = mlp(5, 3), decoder(5, nn.Sigmoid())
    z, y, x = torch.randn(4, 5), torch.randint(0, 3, (4,)), torch.rand(4, 3, 4)
    head, loss = sum_losses([cls_head, dec], ["ce", "mse"])
    both = latent_hessian(head, z, (y, x), loss)
    torch.testing.assert_close(both, oracle(cls_head, z, y, "ce") + oracle(dec, z, x, "mse"))


def test_hessian_is_differentiable_through_encoder_and_head():
    torch.manual_seed(5)
    enc, head = nn.Linear(3, 5), mlp(5, 4)
    z = enc(torch.randn(6, 3))
    latent_hessian(head, z, torch.randint(0, 4, (6,)), "ce").pow(2).sum().backward()
    assert enc.weight.grad.abs().sum() > 0 and head[0].weight.grad.abs().sum() > 0


def test_batchnorm_in_train_mode_is_refused_and_eval_is_exact():
    head = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    z, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    with pytest.raises(HerdError, match="BatchNorm1d"):
        latent_hessian(head, z, y)
    head.eval()
    torch.testing.assert_close(latent_hessian(head, z, y), oracle(head, z, y, "ce"))


def test_bad_method_combinations_raise():
    z = torch.randn(2, 3)
    with pytest.raises(HerdError, match="closed_form"):
        latent_hessian(mlp(3, 2), z, torch.tensor([0, 1]), "ce", "closed_form")
    with pytest.raises(HerdError, match="forward method knows the losses"):
        latent_hessian(
            nn.Linear(3, 2), z, torch.tensor([0, 1]), lambda o, t: o.sum(1), "gauss_newton"
        )
    with pytest.raises(HerdError, match="unknown loss"):
        latent_hessian(nn.Linear(3, 2), z, torch.tensor([0, 1]), "hinge", "exact")


def test_block_mass_estimator_is_unbiased():
    torch.manual_seed(6)
    head, y = mlp(6, 3), torch.randint(0, 3, (4,))
    z = torch.randn(4, 6)
    region = torch.zeros(4, 6, dtype=torch.bool)
    region[:, :2] = True
    region[1, :2], region[1, 3:5] = False, True
    H = oracle(head, z, y, "ce")
    want_total = H.pow(2).sum((1, 2))
    want_inside = torch.stack([H[i][region[i]][:, region[i]].pow(2).sum() for i in range(4)])
    inside, total = hessian_block_mass(
        head, z, y, region, "ce", probes=1500, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(total, want_total, rtol=0.15, atol=0)
    torch.testing.assert_close(inside, want_inside, rtol=0.15, atol=0)


def gauss_newton_oracle(head, z, target, loss):
    """J_i^T M_i J_i per sample, J from torch.autograd.functional.jacobian, M written out per
    loss."""
    out = []
    for i in range(len(z)):
        J = jacobian(lambda v: head(v[None])[0], z[i]).reshape(-1, z.shape[1])  # (N, d)
        o = head(z[i : i + 1])[0].reshape(-1)
        n = o.numel()
        if loss == "ce":
            p = torch.softmax(o, -1)
            M = torch.diag(p) - torch.outer(p, p)
        elif loss == "mse":
            M = 2.0 / n * torch.eye(n)
        else:  # bce through the decoder's final sigmoid: p(1 - p) / n on the logits
            M = torch.diag(1 / (n * o * (1 - o)))
        out.append(J.T @ M @ J)
    return torch.stack(out).detach()


@pytest.mark.parametrize(
    "case", ["mlp-ce", "block-head-ce", "sigmoid-mse", "sigmoid-bce", "relu-mse"]
)
def test_forward_estimate_converges_to_the_gauss_newton_masses(case):
    torch.manual_seed(3)
    if case == "relu-mse":
        head, target, loss = (
            nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 4)),
            torch.randn(6, 4),
            "mse",
        )
    else:
        head, target, loss = CASES[case]()
    z = torch.randn(6, 5)
    region = torch.zeros(6, 5, dtype=torch.bool)
    region[:, :2] = True
    G = gauss_newton_oracle(head, z, target, loss)
    want_in, want_total = G[:, :2, :2].pow(2).sum((1, 2)), G.pow(2).sum((1, 2))
    probes = torch.Generator().manual_seed(0)
    inside, total = forward_block_mass(head, z, region, loss, 600, probes, eps=1e-6)
    # k probe pairs give k^2 correlated products: the relative error falls like 1/sqrt(k), ~0.06
    # here
    torch.testing.assert_close(total.detach(), want_total, rtol=0.2, atol=1e-8)
    torch.testing.assert_close(inside.detach(), want_in, rtol=0.2, atol=1e-8)
    if case == "relu-mse":  # Gauss-Newton is the exact Hessian here
        H = oracle(head, z, target, loss)
        torch.testing.assert_close(G, H, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("case", ["mlp-ce", "block-head-ce", "sigmoid-mse", "sigmoid-bce"])
def test_gauss_newton_method_equals_the_explicit_gauss_newton_matrix(case):
    torch.manual_seed(7)
    head, target, loss = CASES[case]()
    z = torch.randn(6, 5)
    # one-sided differences: error O(eps) on curved heads
    G = forward_gauss_newton(head, z, loss, eps=1e-7)
    torch.testing.assert_close(G, gauss_newton_oracle(head, z, target, loss), rtol=1e-5, atol=1e-8)


def test_gauss_newton_is_the_hessian_of_bce_through_a_relu_decoder_and_sigmoid():
    """BCE on a sigmoid output is linear in the logits' curvature, so a piecewise-linear decoder has
    no residual term: the Burgess decoder's BCE Hessian is exactly its Gauss-Newton matrix."""
    torch.manual_seed(8)
    head = nn.Sequential(
        nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 12), nn.Sigmoid(), nn.Unflatten(1, (3, 4))
    )
    z, x = torch.randn(5, 4), torch.rand(5, 3, 4)
    torch.testing.assert_close(
        forward_gauss_newton(head, z, "bce", eps=1e-7),
        oracle(head, z, x, "bce"),
        rtol=1e-5,
        atol=1e-10,
    )


def test_gauss_newton_of_a_sum_of_losses_and_its_gradient():
    torch.manual_seed(9)
    cls_head, dec = mlp(5, 3), decoder(5, nn.Sigmoid())
    z, y, x = torch.randn(4, 5, requires_grad=True), torch.tensor([0, 1, 2, 0]), torch.rand(4, 3, 4)
    head, loss = sum_losses([cls_head, dec], ["ce", "bce"])
    G = forward_gauss_newton(head, z, loss, eps=1e-7)
    want = gauss_newton_oracle(cls_head, z, y, "ce") + gauss_newton_oracle(dec, z, x, "bce")
    torch.testing.assert_close(G.detach(), want, rtol=1e-4, atol=1e-8)
    G.pow(
        2
    ).sum().backward()  # differentiable through the finite differences, no double backward needed
    assert z.grad.abs().sum() > 0 and dec[0].weight.grad.abs().sum() > 0


def test_forward_estimate_of_a_sum_of_losses_adds_their_gauss_newton_matrices():
    torch.manual_seed(4)
    cls_head, dec = mlp(5, 3), decoder(5, nn.Sigmoid())
    z, y, x = torch.randn(4, 5), torch.tensor([0, 1, 2, 0]), torch.rand(4, 3, 4)
    head, loss = sum_losses([cls_head, dec], ["ce", "bce"])
    G = gauss_newton_oracle(cls_head, z, y, "ce") + gauss_newton_oracle(dec, z, x, "bce")
    region = torch.ones(4, 5, dtype=torch.bool)
    probes = torch.Generator().manual_seed(1)
    _, total = forward_block_mass(head, z, region, loss, 600, probes, eps=1e-6)
    torch.testing.assert_close(total.detach(), G.pow(2).sum((1, 2)), rtol=0.2, atol=1e-8)


def test_forward_estimate_needs_no_double_backward():
    """A head whose backward cannot be differentiated again breaks every HVP path, not this one."""

    class FirstOrderOnly(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.tanh(x)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (1 - torch.tanh(x) ** 2)

    lin1, lin2 = nn.Linear(5, 7), nn.Linear(7, 3)
    head = lambda z: lin2(FirstOrderOnly.apply(lin1(z)))
    z, y = torch.randn(8, 5, requires_grad=True), torch.arange(8) % 3
    region = BlockLayout.split(3, 6).own(y)[:, :5]
    inside, total = block_mass(head, z, y, region, "ce", "forward", probes=2)
    (inside.sum() / total.sum()).backward()
    assert z.grad is not None and lin1.weight.grad.abs().sum() > 0
    with pytest.raises(RuntimeError):
        hessian_block_mass(head, z, y, region, "ce", probes=2)[1].sum().backward()


def test_forward_penalty_gradient_matches_finite_differences_of_the_penalty():
    torch.manual_seed(5)
    head, z, y = mlp(6, 3), torch.randn(12, 6), torch.arange(12) % 3
    herd = HeRD(BlockLayout.split(3, 6), method="forward", probes=2)
    weight = head[0].weight

    def penalty():
        return herd(head, z, y, labels=y)  # the probe draws come from the global seed

    torch.manual_seed(11)
    penalty().backward()
    grad = weight.grad[0, 0].item()
    step = 1e-5
    with torch.no_grad():
        weight[0, 0] += step
    torch.manual_seed(11)
    up = penalty().item()
    with torch.no_grad():
        weight[0, 0] -= 2 * step
    torch.manual_seed(11)
    down = penalty().item()
    assert grad == pytest.approx((up - down) / (2 * step), rel=1e-3, abs=1e-8)


@pytest.mark.parametrize("method", ["auto", "forward"])
def test_penalty_is_float32_under_bfloat16_autocast(method):
    torch.set_default_dtype(torch.float32)  # a float32 model, as mixed precision training has
    torch.manual_seed(6)
    head, z, y = mlp(6, 3).float(), torch.randn(16, 6, dtype=torch.float32), torch.arange(16) % 3
    herd = HeRD(BlockLayout.split(3, 6), method=method)
    torch.manual_seed(2)
    plain = herd(head, z, y, labels=y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(2)
        mixed = herd(head, z.bfloat16(), y, labels=y)
    assert mixed.dtype == torch.float32
    # z itself was rounded to bfloat16 (3 significant digits); the curvature after it is float32
    assert mixed.item() == pytest.approx(plain.item(), rel=0.05)


def test_unknown_probe_method_lists_the_valid_ones():
    with pytest.raises(HerdError, match="choose one of: hvp, forward"):
        block_mass(
            mlp(3, 2),
            torch.randn(2, 3),
            torch.tensor([0, 1]),
            torch.ones(2, 3, dtype=torch.bool),
            "ce",
            "jvp",
        )


def test_universal_herd_on_a_decoder_is_the_penalty_of_its_gauss_newton_matrix():
    """``auto`` on a decoder loss: the universal penalty of J^T M J from forward passes, which for a
    ReLU decoder with a sigmoid and BCE is the penalty of the exact Hessians."""
    from herd_cls.regularizers.herd_forms import universal_penalty

    torch.manual_seed(10)
    head = nn.Sequential(
        nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 12), nn.Sigmoid(), nn.Unflatten(1, (3, 4))
    )
    z, x = torch.randn(6, 4, requires_grad=True), torch.rand(6, 3, 4)
    herd = HeRD(BlockLayout.split(2, 4), mode="universal")
    penalty = herd(head, z, x, loss="bce")
    expected = universal_penalty(oracle(head, z, x, "bce"), scale=z.detach().std(0))
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-2)
    penalty.backward()
    assert z.grad.abs().sum() > 0 and head[0].weight.grad.abs().sum() > 0


def test_cross_entropy_equals_torch_for_confident_and_wrong_samples():
    logits = torch.tensor(
        [[30.0, 0.0, -5.0], [0.0, 40.0, 1.0], [2.0, 1.0, 0.5], [-100.0, 100.0, 0.0]]
    )
    y = torch.tensor([0, 0, 2, 0])
    torch.testing.assert_close(
        per_sample_loss("ce")(logits, y), F.cross_entropy(logits, y, reduction="none")
    )


def test_float32_cross_entropy_hessian_of_confident_samples_matches_float64_oracle():
    # margins of 20-40: p_y rounds to 1 in float32, so d(CE)/d logit_y = p_y - 1 rounds to 0
    torch.manual_seed(3)
    head = BlockHead(BlockLayout(3, 2), hidden=8)
    z = torch.randn(12, 6)
    with torch.no_grad():
        head.w2.mul_(20.0)
        y = head(z).argmax(1)
    head32, z32 = copy.deepcopy(head).float(), z.float()
    assert (
        torch.softmax(head32(z32), 1).gather(1, y[:, None]) == 1
    ).any()  # the hard case is present
    H32 = latent_hessian(head32, z32, y, "ce").double()
    H64 = oracle(head.double(), z, y, "ce")
    scale = H64.abs().amax((1, 2), keepdim=True)
    assert ((H32 - H64).abs() / scale).max() < 1e-3
    own = BlockLayout.split(3, 6).own(y)
    inside = own[:, :, None] & own[:, None, :]
    share = lambda H: (H.abs() * inside).sum((1, 2)) / H.abs().sum((1, 2))
    torch.testing.assert_close(share(H32), share(H64), rtol=1e-3, atol=1e-4)
    # what torch's own cross-entropy gives in float32: the own block of the sure samples is lost
    naive = latent_hessian(
        head32, z32, y, lambda o, t: F.cross_entropy(o, t, reduction="none")
    ).double()
    assert (share(naive) - share(H64)).abs().max() > 0.5


def test_herd_on_a_wide_block_head_penalises_its_exact_hessians():
    """Above AUTO_EXACT_MAX_DIM a generic head trains on a probe estimate, a block head on its exact
    (closed-form) Hessians: the penalty is that of the oracle's."""
    from herd_cls.curvature import AUTO_EXACT_MAX_DIM

    torch.manual_seed(11)
    layout = BlockLayout(num_classes=3, dims_per_class=30, shared_dims=2)
    assert layout.latent_dim > AUTO_EXACT_MAX_DIM
    head, z, y = BlockHead(layout, hidden=6), torch.randn(8, layout.latent_dim), torch.arange(8) % 3
    herd = HeRD(layout)
    torch.testing.assert_close(
        herd(head, z, y, labels=y), herd.penalty(oracle(head, z, y, "ce"), y)
    )


def test_block_head_masses_equal_those_of_oracle_hessians():
    """The (inside, total) |H| masses the block head's penalty uses without forming H, against the
    oracle's, with shared dims; a head on another layout's blocks falls back to the dense path with
    the same penalty."""
    from herd_cls.block_curvature import block_head_masses, on_blocks

    torch.manual_seed(12)
    layout = BlockLayout(num_classes=4, dims_per_class=3, shared_dims=2)
    head, z, y = BlockHead(layout, hidden=5), torch.randn(7, 14) * 2, torch.randint(0, 4, (7,))
    H = oracle(head, z, y, "ce").abs()
    inside, total = block_head_masses(head, z, y, y)
    torch.testing.assert_close(inside, (H * layout.own_pairs(y)).sum((1, 2)))
    torch.testing.assert_close(total, H.sum((1, 2)))
    # the same width, other blocks
    other = BlockLayout(num_classes=2, dims_per_class=6, shared_dims=2)
    assert not on_blocks(head, other) and on_blocks(head, layout)
    torch.testing.assert_close(
        HeRD(other)(head, z, y, labels=y % 2), HeRD(other).penalty(oracle(head, z, y, "ce"), y % 2)
    )
