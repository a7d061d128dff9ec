import pytest
import torch
from torch import nn

from herd_cls.analysis.attribution import ATTRIBUTIONS, attribute, class_latent_attribution
from herd_cls.registry import HerdError


@pytest.fixture
def linear_case():
    torch.manual_seed(0)
    return nn.Linear(4, 3), torch.randn(20, 4), torch.arange(20) % 3


@pytest.mark.parametrize("method", ["integrated-gradients", "occlusion"])
def test_linear_head_attribution_is_weight_times_input(linear_case, method):
    # for f(z) = W z + b and a zero baseline, both methods give exactly W[y, j] * z_j
    head, z, y = linear_case
    torch.testing.assert_close(
        attribute(head, z, y, method), z * head.weight[y].detach(), atol=1e-5, rtol=1e-4
    )


def test_saliency_is_absolute_gradient(linear_case):
    head, z, y = linear_case
    torch.testing.assert_close(
        attribute(head, z, y, "saliency"), head.weight[y].detach().abs().expand(20, 4)
    )


def test_gradient_shap_is_reproducible_and_close_to_ig_for_linear(linear_case):
    head, z, y = linear_case
    a, b = attribute(head, z, y, "gradient-shap"), attribute(head, z, y, "gradient-shap")
    assert torch.equal(a, b)
    assert (
        torch.corrcoef(torch.stack([a.flatten(), (z * head.weight[y]).detach().flatten()]))[0, 1]
        > 0.9
    )


def test_input_attribution_on_images_in_batches():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(2 * 64, 3)
    )
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    for method in ATTRIBUTIONS.names():
        assert attribute(model, x, y, method, batch_size=2).shape == x.shape


def test_class_latent_matrix_and_unknown_method(linear_case):
    head, z, y = linear_case
    res = class_latent_attribution(head, z, y, 3)
    assert res["matrix"].shape == (3, 4)
    torch.testing.assert_close(
        res["matrix"][1], (z[y == 1] * head.weight[1]).abs().mean(0).detach()
    )
    with pytest.raises(
        HerdError, match="choose one of: gradient-shap, integrated-gradients, occlusion, saliency"
    ):
        attribute(head, z, y, "lime")


def test_gradient_free_methods_run_without_autograd(linear_case):
    """A gradient-free entry (occlusion) runs its forward passes with autograd off; the others need
    it on."""
    head, z, y = linear_case
    seen = []
    fn = lambda inputs: (seen.append(torch.is_grad_enabled()), head(inputs))[1]
    attribute(fn, z[:4], y[:4], "occlusion")
    assert seen and not any(seen) and ATTRIBUTIONS.get("occlusion").gradient_free
    seen.clear()
    attribute(fn, z[:4], y[:4], "saliency")
    assert seen and all(seen)
