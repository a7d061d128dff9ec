import pytest
import timm
import torch
from safetensors.torch import save_file

from herd_cls.models import create_model
from herd_cls.registry import HerdError


@pytest.mark.parametrize("backbone,size", [("resnet18", 16), ("convnext_atto", 32),
                                           ("vit_tiny_patch16_224", 32), ("conv", 16)])
def test_model_contract_across_backbones(backbone, size):
    torch.manual_seed(0)
    model = create_model(backbone, num_classes=4, in_chans=1, image_size=size, latent_dim=10, decoder=True).eval()
    x = torch.rand(3, 1, size, size)
    z = model.encode(x)
    assert z.shape == (3, 10) and model.latent_dim == 10
    assert model.classify(z).shape == (3, 4)
    torch.testing.assert_close(model(x), model.classify(z))
    x_hat = model.decode(z)
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.bottleneck.parameters())


def test_pre_logits_latent_keeps_timms_own_classifier():
    torch.manual_seed(0)
    reference = timm.create_model("resnet18", num_classes=5, in_chans=3).eval()
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=5, in_chans=3, image_size=32, latent="pre-logits",
                         head="linear", mean=[0.0] * 3, std=[1.0] * 3).eval()
    x = torch.rand(2, 3, 32, 32)
    assert model.latent_dim == reference.num_features == 512
    assert isinstance(model.classify, torch.nn.Linear) and model.classify.out_features == 5
    # same init seed, same architecture: the wrapped model computes the unmodified timm classifier
    torch.testing.assert_close(model(x), reference(x))


def test_pretrained_file_loads_local_weights(tmp_path):
    source = timm.create_model("resnet18", num_classes=10, in_chans=1)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = create_model("resnet18", num_classes=10, in_chans=1, image_size=16, latent_dim=8,
                         pretrained_file=str(path))
    torch.testing.assert_close(model.backbone.conv1.weight, source.conv1.weight)
    torch.testing.assert_close(model.backbone.layer4[1].bn2.running_mean, source.layer4[1].bn2.running_mean)


def test_bad_model_requests_explain_themselves(tmp_path):
    with pytest.raises(HerdError, match="did you mean: resnet18"):
        create_model("resnet_18", 10, 1, 16, latent_dim=8)
    with pytest.raises(HerdError, match="does not exist"):
        create_model("resnet18", 10, 1, 16, latent_dim=8, pretrained_file=str(tmp_path / "missing.pth"))
    with pytest.raises(HerdError, match="unknown head"):
        create_model("conv", 10, 1, 16, latent_dim=8, head="deep")


def test_block_head_logits_see_only_their_block_and_the_shared_dims():
    from herd_cls.models import make_head
    from herd_cls.regularizer import class_blocks

    torch.manual_seed(0)
    head = make_head("block", latent_dim=8, num_classes=3, hidden=5, shared_dims=2)
    z = torch.randn(4, 8)
    J = torch.autograd.functional.jacobian(lambda v: head(v.unsqueeze(0))[0], z[0])   # (K, d)
    allowed = class_blocks(3, 8, 2) | torch.tensor([False] * 6 + [True] * 2)
    assert (J[~allowed] == 0).all() and (J[allowed] != 0).all()
    with pytest.raises(HerdError, match="does not split into 3 class blocks"):
        make_head("block", latent_dim=9, num_classes=3, shared_dims=2)
