import pytest
import torch
from torch import nn

# a model and data small enough to train end-to-end in seconds on a CPU
TINY = (
    "--dataset digits --num-samples 300 --image-size 16 --backbone conv --epochs 2 "
    "--batch-size 32 --quiet"
).split()


@pytest.fixture
def tiny_args(tmp_path):
    return TINY + ["--out-dir", str(tmp_path / "runs")]


@pytest.fixture
def toy():
    """(model, encoder, images, the model's own predictions): a tiny 4-class classifier on 8x8
    images."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 8))
    model = nn.Sequential(encoder, nn.GELU(), nn.Linear(8, 4)).eval()
    x = torch.rand(60, 1, 8, 8)
    return model, encoder, x, model(x).argmax(1).detach()


@pytest.fixture
def attack_toy(toy):
    """``evaluate_robustness`` of the toy classifier (its 8 latent dims as 4 blocks of 2):
    ``run(attacks, eps, **options)``; ``model=`` attacks another classifier on the same images."""
    from herd_cls.analysis.robustness import evaluate_robustness
    from herd_cls.layout import BlockLayout

    model, encoder, x, y = toy

    def run(attacks, eps, model=model, **options):
        return evaluate_robustness(model, encoder, x, y, BlockLayout(4, 2), attacks, eps, **options)

    return run
