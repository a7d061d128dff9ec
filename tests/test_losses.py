"""The loss registry: each entry's per-sample loss against torch's own, and its output-space
curvature (the bilinear form and J^T M J) against the Hessian autograd gives of the loss in output
space."""

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import hessian

from herd_cls.losses import LOSSES, output_loss, per_sample_loss
from herd_cls.registry import HerdError


def _sample(name: str, generator):
    """(output, target) of 3 samples: logits and labels for ce, sigmoid images and images
    otherwise."""
    if name == "ce":
        return torch.randn(3, 5, generator=generator, dtype=torch.float64), torch.tensor([0, 4, 2])
    out = torch.rand(3, 2, 4, generator=generator, dtype=torch.float64) * 0.8 + 0.1
    return out, torch.rand(3, 2, 4, generator=generator, dtype=torch.float64)


def _output_curvature(name: str, out, target, i: int):
    """The oracle M_i from autograd: the Hessian of sample i's loss in output space (on the logits
    for ce). bce's decoder ends in a sigmoid, so its M is the Hessian on the logits, carried to the
    probabilities: with J_p = diag(p(1 - p)) J_logit, J_logit^T H J_logit = J_p^T D H D J_p for D =
        diag(1 / (p(1 - p)))."""
    if name == "bce":
        p = out[i].flatten()
        fn = lambda logit: per_sample_loss("bce")(
            torch.sigmoid(logit).view_as(out[i : i + 1]),
            target[i : i + 1],
        ).sum()
        D = torch.diag(1 / (p * (1 - p)))
        return D @ hessian(fn, torch.log(p / (1 - p))) @ D
    fn = lambda o: per_sample_loss(name)(o.view_as(out[i : i + 1]), target[i : i + 1]).sum()
    return hessian(fn, out[i].flatten())


@pytest.mark.parametrize("name", ["ce", "mse", "bce"])
def test_gram_and_form_equal_the_output_space_hessian(name):
    g = torch.Generator().manual_seed(3)
    out, target = _sample(name, g)
    entry = LOSSES.get(name)
    jac = torch.randn(4, *out.shape, generator=g, dtype=torch.float64)  # 4 latent dims' columns
    gram, form = entry.gram(out, jac), entry.form(out)
    for i in range(len(out)):
        J = jac[:, i].reshape(4, -1).T  # (outputs, d)
        want = J.T @ _output_curvature(name, out, target, i) @ J
        torch.testing.assert_close(gram[i], want)
        pairwise = form(jac.unsqueeze(1), jac.unsqueeze(0))[:, :, i]  # (d, d) a^T M b
        torch.testing.assert_close(pairwise, want)


def test_per_sample_losses_match_torch():
    g = torch.Generator().manual_seed(0)
    logits, labels = _sample("ce", g)
    torch.testing.assert_close(
        per_sample_loss("ce")(logits, labels), F.cross_entropy(logits, labels, reduction="none")
    )
    out, x = _sample("bce", g)
    torch.testing.assert_close(
        per_sample_loss("bce")(out, x),
        F.binary_cross_entropy(out, x, reduction="none").mean((1, 2)),
    )
    torch.testing.assert_close(per_sample_loss("mse")(out, x), ((out - x) ** 2).mean((1, 2)))
    pair = per_sample_loss(("mse", "bce"))((out, out), (x, x))
    torch.testing.assert_close(
        pair, per_sample_loss("mse")(out, x) + per_sample_loss("bce")(out, x)
    )


def test_the_margin_form_keeps_a_confident_samples_derivative():
    """F.cross_entropy's gradient rounds to 0 in float32 once p_y rounds to 1; the margin form's
    does not."""
    logits = torch.tensor([[40.0, 0.0, 0.0]], requires_grad=True)
    (grad,) = torch.autograd.grad(per_sample_loss("ce")(logits, torch.tensor([0])).sum(), logits)
    assert grad[0, 1] > 0 and grad[0, 0] < 0


def test_reconstruction_losses_and_unknown_names():
    assert [n for n in LOSSES.names(sort=False) if LOSSES.get(n).reconstruction] == ["mse", "bce"]
    with pytest.raises(HerdError, match="unknown loss 'l1'; choose one of: bce, ce, mse"):
        per_sample_loss("l1")
    with pytest.raises(HerdError, match="forward method knows the losses bce, ce, mse"):
        output_loss(lambda out, t: out.sum(1))
