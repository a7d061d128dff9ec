import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from herd_cls.models import create_model
from herd_cls.registry import HerdError


@pytest.fixture(autouse=True)
def _one_thread():
    # on a shared 2-core machine two intra-op threads ran these small models 10-50x slower than one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "backbone,size",
    [
        ("resnet18", 16),
        ("convnext_atto", 32),
        ("vit_tiny_patch16_224", 32),
        ("conv", 16),
        ("burgess", 32),
        ("burgess", 64),
        ("burgess", 24),
    ],
)
def test_model_contract_across_backbones(backbone, size):
    torch.manual_seed(0)
    model = create_model(
        backbone,
        num_classes=4,
        in_chans=1,
        image_size=size,
        latent_dim=10,
        head="mlp",
        decoder=True,
    ).eval()
    x = torch.rand(3, 1, size, size)
    z = model.encode(x)
    assert z.shape == (3, 10) and model.latent_dim == 10
    assert model.classify(z).shape == (3, 4)
    torch.testing.assert_close(model(x), model.classify(z))
    x_hat = model.decode(z)
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.bottleneck.parameters())


def test_burgess_architecture_is_the_literatures():
    """Four 4x4 stride-2 convs of 32, 32, 64, 64 channels, dense 256 twice; the decoder mirrors
    it."""
    model = create_model(
        "burgess", num_classes=3, in_chans=1, image_size=64, latent_dim=10, head="mlp", decoder=True
    )
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (n, (4, 4), (2, 2)) for n in (32, 32, 64, 64)
    ]
    assert [m.out_features for m in model.backbone.modules() if isinstance(m, torch.nn.Linear)] == [
        256,
        256,
    ]
    ups = [m for m in model.decode.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.out_channels, c.stride) for c in ups] == [
        (64, (2, 2)),
        (32, (2, 2)),
        (32, (2, 2)),
        (1, (2, 2)),
    ]
    acts = {
        type(m)
        for part in (model.backbone, model.decode)
        for m in part.modules()
        if not list(m.children())
        and not isinstance(
            m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear, torch.nn.Flatten)
        )
    }
    assert acts == {torch.nn.ReLU}


def _timm_and_prelogits(backbone: str, **timm_kwargs):
    """(timm's own 5-class model, create_model's pre-logits latent with a linear head on it), each
    built from seed 0, in eval mode, for 32x32 RGB images (unit normalisation)."""
    torch.manual_seed(0)
    reference = timm.create_model(backbone, num_classes=5, in_chans=3, **timm_kwargs).eval()
    torch.manual_seed(0)
    model = create_model(
        backbone,
        num_classes=5,
        in_chans=3,
        image_size=32,
        latent="pre-logits",
        head="linear",
        mean=[0.0] * 3,
        std=[1.0] * 3,
    )
    return reference, model.eval()


def test_pre_logits_latent_keeps_timms_own_classifier():
    reference, model = _timm_and_prelogits("resnet18")
    x = torch.rand(2, 3, 32, 32)
    assert model.latent_dim == reference.num_features == 512
    assert isinstance(model.classify, torch.nn.Linear) and model.classify.out_features == 5
    # same init seed, same architecture: the wrapped model computes the unmodified timm classifier
    torch.testing.assert_close(model(x), reference(x))


def test_pretrained_file_loads_local_weights(tmp_path):
    source = timm.create_model("resnet18", num_classes=10, in_chans=1)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = create_model(
        "resnet18",
        num_classes=10,
        in_chans=1,
        image_size=16,
        latent_dim=8,
        head="mlp",
        pretrained_file=str(path),
    )
    torch.testing.assert_close(model.backbone.conv1.weight, source.conv1.weight)
    torch.testing.assert_close(
        model.backbone.layer4[1].bn2.running_mean, source.layer4[1].bn2.running_mean
    )


def test_bad_model_requests_explain_themselves(tmp_path):
    with pytest.raises(HerdError, match="did you mean: resnet18"):
        create_model("resnet_18", num_classes=10, in_chans=1, image_size=16, latent_dim=8)
    with pytest.raises(HerdError, match="does not exist"):
        create_model(
            "resnet18",
            num_classes=10,
            in_chans=1,
            image_size=16,
            latent_dim=8,
            pretrained_file=str(tmp_path / "missing.pth"),
        )
    with pytest.raises(HerdError, match="unknown head"):
        create_model("conv", num_classes=10, in_chans=1, image_size=16, latent_dim=8, head="deep")
    with pytest.raises(
        HerdError, match="unknown latent 'features'; choose one of: bottleneck, pre-logits"
    ):
        create_model("conv", num_classes=10, in_chans=1, image_size=16, latent="features")
    with pytest.raises(HerdError, match="use 'burgess' or 'conv' or any name in timm.list_models"):
        create_model("convy-net-9", num_classes=10, in_chans=1, image_size=16)


def test_latent_kinds_size_z():
    """A bottleneck is 2 dims per class plus the shared ones by default; pre-logits are the
    features, and what is left over after equal class blocks is shared."""
    bottleneck = create_model("conv", num_classes=3, in_chans=1, image_size=16, shared_dims=2)
    assert bottleneck.latent_dim == 8 and bottleneck.layout.shared_dims == 2
    features = create_model("conv", num_classes=5, in_chans=1, image_size=16, latent="pre-logits")
    width = features.backbone.num_features
    assert features.latent_dim == width and features.layout.shared_dims == width % 5


def test_block_head_logits_see_only_their_block_and_the_shared_dims():
    from herd_cls.heads import make_head
    from herd_cls.layout import BlockLayout

    torch.manual_seed(0)
    head = make_head("block", 8, 3, hidden=5, layout=BlockLayout(3, 2, shared_dims=2))
    z = torch.randn(4, 8)
    J = torch.autograd.functional.jacobian(lambda v: head(v.unsqueeze(0))[0], z[0])  # (K, d)
    allowed = BlockLayout(3, 2, 2).masks | torch.tensor([False] * 6 + [True] * 2)
    assert (J[~allowed] == 0).all() and (J[allowed] != 0).all()
    with pytest.raises(HerdError, match="does not split into 3 class blocks"):
        create_model("conv", num_classes=3, in_chans=1, image_size=16, latent_dim=9, shared_dims=2)


# one small model of every timm family the project supports; all of them take 32 x 32 images
FAMILIES = [
    "resnet18",  # conv nets
    "convnext_atto",  # ConvNeXt (needs 32: its stem and downsamplers stride 32 in all)
    "mobilenetv3_small_100",  # MobileNet/EfficientNet-style: conv_head after the pooling
    "lcnet_050",  # the same, head_hidden_size 1280 > num_features 256
    "ghostnet_100",
    "mobilenetv4_conv_small",
    "vit_tiny_patch16_224",  # ViT, built for the input size
    "efficientvit_b0",  # hybrid conv/attention, a hidden head layer after the pooling
    "levit_128s",  # hybrid, distilled: two heads with BatchNorm1d
    "poolformer_s12",  # MetaFormer (the smallest)
]


@pytest.mark.parametrize("latent", ["bottleneck", "pre-logits"])
@pytest.mark.parametrize("backbone", FAMILIES)
def test_every_timm_family_trains_with_herd_and_runs_the_analysis(backbone, latent):
    from torch.utils.data import TensorDataset

    from herd_cls.analysis.attribution import class_latent_attribution
    from herd_cls.analysis.latents import collect
    from herd_cls.regularizers.herd import HeRD

    torch.manual_seed(0)
    K, size = 4, 32
    # pre-logits with a linear head: the timm model's own classifier on its own pre-logit features
    model = create_model(
        backbone,
        num_classes=K,
        in_chans=1,
        image_size=size,
        latent=latent,
        latent_dim=8,
        head="linear" if latent == "pre-logits" else "mlp",
    )
    # after any conv_head / hidden head layer, not num_features
    width = model.backbone.head_hidden_size
    assert model.latent_dim == (width if latent == "pre-logits" else 8)
    assert model.backbone.training, (
        "the dry forward that measures the width must restore train mode"
    )
    if latent == "bottleneck":
        assert model.bottleneck.in_features == width

    x, y = torch.rand(4, 1, size, size), torch.arange(K)
    herd = HeRD(model.layout, variant="purity")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    z = model.encode(x)
    assert z.shape == (4, model.latent_dim)
    if backbone == "levit_128s" and latent == "pre-logits":
        # LeViT's own classifier normalises with BatchNorm1d: HeRD refuses batch statistics in one
        # line,
        with pytest.raises(HerdError, match="BatchNorm1d using batch statistics"):
            herd(model.classify, z, y, labels=y, loss="ce")
        model.classify.eval()  # and takes the head once its statistics are frozen
    loss = F.cross_entropy(model.classify(z), y) + herd(model.classify, z, y, labels=y, loss="ce")
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.backbone.parameters()))

    out = collect(model, TensorDataset(x, y))
    assert out["z"].shape == (4, model.latent_dim) and out["logits"].shape == (4, K)
    attr = class_latent_attribution(model.classify, out["z"], out["y"], K, "saliency")
    assert attr["matrix"].shape == (K, model.latent_dim) and torch.isfinite(attr["matrix"]).all()


@pytest.mark.parametrize("backbone", ["mobilenetv3_small_100", "efficientvit_b0", "levit_128s"])
def test_pre_logits_linear_head_is_the_timm_classifier_after_its_head_stage(backbone):
    # levit_128s is distilled: get_classifier() is (head, head_dist) and its logits are their mean
    reference, model = _timm_and_prelogits(
        backbone, **({"img_size": 32} if backbone == "levit_128s" else {})
    )
    x = torch.rand(2, 3, 32, 32)
    assert model.latent_dim == reference.head_hidden_size
    torch.testing.assert_close(model(x), reference(x))


def test_an_input_size_the_backbone_cannot_take_is_refused_in_one_line():
    # ConvNeXt downsamples by 32 with 2x2 convs, so 16 x 16 images shrink below one pixel
    with pytest.raises(
        HerdError, match=r"convnext_atto cannot take 16x16 images .*--image-size 224"
    ) as err:
        create_model("convnext_atto", num_classes=4, in_chans=1, image_size=16, latent_dim=8)
    assert "\n" not in str(err.value)
    # EfficientFormer's last stage has attention biases for a fixed 7 x 7 grid
    with pytest.raises(
        HerdError,
        match=r"efficientformer_l1 cannot take 32x32 images .*choose another --image-size",
    ):
        create_model("efficientformer_l1", num_classes=4, in_chans=1, image_size=32, latent_dim=8)
