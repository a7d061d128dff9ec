"""What analyse() measures purity on: a prefix that spreads over the classes, and carriers mapped
back to the test images they came from; score_test_split against per-image autograd Hessians."""

import pytest
import torch

from herd_cls.analysis.runs import carriers, round_robin
from herd_cls.purity import Purity


def test_round_robin_takes_every_classs_first_image_then_every_second():
    # class-major, as an image folder's test split
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    assert round_robin(labels).tolist() == [0, 3, 5, 1, 4, 6, 2, 7, 8]
    assert set(labels[round_robin(labels)[:3]].tolist()) == {0, 1, 2}


def test_carriers_name_the_test_images_they_came_from():
    """Purity measured on test images 4, 0, 2 (in that order): class 0's heaviest measured image,
    its second, is test image 0."""
    purity = Purity(
        torch.tensor([0.5, 0.5]),
        torch.tensor([0.9, 0.2, 0.7]),
        torch.tensor([1, 0, 0]),
        None,
        "exact",
        torch.tensor([1.0, 5.0, 2.0]),
    )
    x, logits = torch.arange(5.0).view(5, 1, 1, 1), torch.eye(5, 2)
    found = carriers(purity, x, logits, 0, k=1, measured=torch.tensor([4, 0, 2]))
    assert (
        found.images.flatten().tolist() == [0.0]
        and found.index == [0]
        and found.own_share == pytest.approx([0.2])
    )


def test_score_test_split_scores_every_test_image_as_the_autograd_oracle_does(tiny_args):
    from click.testing import CliRunner
    from torch.autograd.functional import hessian
    from torch.nn.functional import cross_entropy

    from herd_cls import load_run
    from herd_cls.analysis.runs import score_test_split
    from herd_cls.cli import main

    args = [*tiny_args, "--name", "a", "--epochs", "1", "--reg", "class"]
    assert CliRunner().invoke(main, ["train", *args]).exit_code == 0
    run = load_run(f"{tiny_args[-1]}/a")
    run.model.train()
    scored = score_test_split(run, ["accuracy", "block_purity"], "exact", batch_size=16)
    assert run.model.training  # the caller's mode is kept
    run.model.eval()
    images, labels = zip(*run.data("test"))  # every test image, in order
    x, y = torch.stack(images), torch.tensor(labels)
    with torch.no_grad():
        z = run.model.encode(x)
        accuracy = (run.model.classify(z).argmax(1) == y).float().mean().item()
    H = torch.stack(
        [
            hessian(lambda v: cross_entropy(run.model.classify(v[None]), y[i : i + 1]), z[i])
            for i in range(len(y))
        ]
    ).abs()
    layout, own = run.layout, []
    for c in range(layout.num_classes):
        mask = layout.masks[c].float()
        inside = (H[y == c] * mask[:, None] * mask[None, :]).sum()
        own.append((inside / H[y == c].sum()).item())
    assert len(scored.test["y"]) == len(y) and len(scored.purity.labels) == len(y)
    assert scored.scores["accuracy"].overall == pytest.approx(accuracy)
    assert scored.scores["block_purity"].per_class == pytest.approx(own, rel=1e-4, abs=1e-6)
