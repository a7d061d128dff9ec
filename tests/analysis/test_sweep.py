import json
import re
from types import SimpleNamespace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import TensorDataset

from herd_cls.analysis.sweep import block_sweep_effect, sweep
from herd_cls.cli import main
from html_pages import check_page
from herd_cls.metrics import sweep_specificity
from herd_cls.layout import BlockLayout


class Identity:
    """A 'model' whose logits are z itself, so every sweep has a known answer."""

    decode = None

    def classify(self, z):
        return z

    def eval(self):
        return self


def test_sweep_moves_exactly_one_dim_by_offset_times_std():
    z = torch.randn(3, 4)
    std = torch.tensor([1.0, 2.0, 0.5, 1.0])
    res = sweep(Identity(), z, [1, 2], std, span=2.0, steps=5)
    assert res["logits"].shape == (2, 5, 3, 4) and res["images"] is None
    assert res["offsets"].tolist() == [-2, -1, 0, 1, 2]
    moved = res["logits"] - z
    torch.testing.assert_close(moved[0, :, :, 1], (res["offsets"] * 2.0).view(5, 1).expand(5, 3))
    torch.testing.assert_close(moved[1, :, :, 2], (res["offsets"] * 0.5).view(5, 1).expand(5, 3))
    assert moved[0, :, :, [0, 2, 3]].abs().max() == 0 and moved[1, :, :, [0, 1, 3]].abs().max() == 0


def test_block_sweep_effect_of_block_aligned_logits_is_perfectly_specific():
    # class c's logit = sum of its own block: sweeping B_c moves only logit c
    blocks = BlockLayout.split(3, 6)
    model = Identity()
    model.classify = lambda z: z.view(len(z), 3, 2).sum(-1)
    z, y = torch.randn(30, 6), torch.arange(30) % 3
    effect = block_sweep_effect(model, z, y, blocks, torch.ones(6))
    assert sweep_specificity(effect)["sweep_specificity"] == pytest.approx(1.0)
    # and a head that mixes all dims into every logit is far from specific
    mix = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    model.classify = lambda z: z @ mix
    assert (
        sweep_specificity(block_sweep_effect(model, z, y, blocks, torch.ones(6)))[
            "sweep_specificity"
        ]
        < 0.7
    )


def test_block_sweep_effect_runs_only_the_classifier_and_agrees_with_the_full_sweep():
    """Row c by hand from :func:`sweep` (which also decodes): the mean |change| of every logit over
    B_c's dims, steps and class c's samples; the effect itself never calls the decoder."""
    blocks, mix = BlockLayout.split(2, 5, 1), torch.randn(5, 2)
    model = Identity()
    model.classify = lambda z: torch.tanh(z @ mix)
    model.decode = lambda z: z.view(len(z), 1, 1, 5)  # what a decoder model sweeps too
    z, y, std = torch.randn(12, 5), torch.arange(12) % 2, torch.rand(5) + 0.5
    expected = torch.stack(
        [
            (
                sweep(model, z[y == c], blocks.block(c).tolist(), std)["logits"]
                - model.classify(z[y == c])
            )
            .abs()
            .mean((0, 1, 2))
            for c in range(2)
        ]
    )
    model.decode = lambda z: pytest.fail("block_sweep_effect decoded images")
    torch.testing.assert_close(block_sweep_effect(model, z, y, blocks, std), expected)


@pytest.mark.slow
def test_sweep_command_writes_a_page_with_existing_images(tiny_args, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["train", *tiny_args, "--name", "a", "--decoder"]).exit_code == 0
    run, out = str(tmp_path / "runs" / "a"), tmp_path / "rep"
    res = runner.invoke(
        main,
        [
            *"sweep --class 3 --run".split(),
            run,
            *"--samples 2 --steps 3 --dims block --out".split(),
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    page = Path(res.output.strip().splitlines()[-1])
    assert page == out / "sweep_class_3.html" and "block dims [6, 7]" in res.output
    parser = check_page(page, min_bytes=1000)
    # every dim's pull on the class (one figure), per block dim: exemplars + decoded sweep, then an
    # image grid and a probability plot
    assert len(parser.images) == 1 + 2 + 4
    assert "with the <strong>trained decoder</strong>" in page.read_text()

    bad = runner.invoke(main, ["sweep", "--class", "12", "--run", run])
    assert (
        bad.exit_code != 0
        and "valid classes: 0 (0), 1 (1)" in bad.output
        and "Traceback" not in bad.output
    )

    # without --class, a decoder run gets the grid of every latent dim (one row each) on a few test
    # images
    res = runner.invoke(
        main, ["sweep", "--run", run, "--samples", "2", "--steps", "3", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    page = Path(res.output.strip().splitlines()[-1])
    assert (
        page == out / "sweep_grid.html"
        and "every latent dim swept on 2 images from the whole test set" in res.output
    )
    assert len(check_page(page).images) == 1
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>", page.read_text())
    assert [int(r[0]) for r in rows] == list(range(20)) and rows[6][1] == "class 3"
    assert all(float(r[2]) >= 0 for r in rows) and any(float(r[2]) > 0 for r in rows)


def test_latent_grid_rows_follow_the_dims_the_decoder_reads():
    """A decoder that draws dim j into pixel j only: each grid row moves exactly its own pixel."""
    from herd_cls.analysis.decoder import latent_grid

    class Decoder(torch.nn.Module):
        def forward(self, z):
            return torch.sigmoid(torch.cat([z[:, :3], torch.zeros(len(z), 1)], 1)).view(-1, 1, 2, 2)

    class FakeRun:
        layout = BlockLayout(2, 1, shared_dims=1)
        decode = Decoder()
        config = SimpleNamespace(reg="class", alpha_cl=1.0)

        def __init__(self):
            self.model = torch.nn.Linear(1, 1)  # a module with a parameter, as collect() expects
            self.model.encode, self.model.classify, self.model.decode = (
                (lambda x: x.flatten(1)[:, :3]),
                (lambda z: z[:, :2]),
                self.decode,
            )

        def data(self, split):
            g = torch.Generator().manual_seed(0)
            return TensorDataset(torch.randn(12, 1, 2, 2, generator=g), torch.arange(12) % 2)

    grid = latent_grid(FakeRun(), None, samples=2, span=1.0, steps=3)
    assert grid.images.shape == (3, 3, 2, 1, 2, 2) and grid.kinds == [
        "class 0",
        "class 1",
        "shared",
    ]
    # (dims, H, W): which pixel moved
    moved = (grid.images[:, -1] - grid.images[:, 0]).abs().amax((1, 2))
    assert (moved.flatten(1).argmax(1) == torch.arange(3)).all()
    assert (moved.flatten(1).gt(0).sum(1) == 1).all() and (grid.change > 0).all()
    assert grid.factors is None  # a data set without recorded factors
    # blocks shaped by nothing: no owners named
    FakeRun.config = SimpleNamespace(reg="universal", alpha_cl=0.0)
    assert latent_grid(FakeRun(), None, samples=1, steps=3).kinds == ["", "", ""]


def test_latent_grid_names_the_factor_each_dim_carries():
    """Images whose first three pixels are the factors (x, y, the class): the identity encoder's
    dims name them."""
    from herd_cls.analysis.decoder import latent_grid
    from herd_cls.image_sets import ImageSet

    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 1, 2, 2, generator=g)
    labels = (x[:, 0, 1, 1] > 0.5).long()
    x[:, 0, 1, 0] = labels.float()
    data = ImageSet(x, labels, {"x": x[:, 0, 0, 0].numpy(), "y": x[:, 0, 0, 1].numpy()})

    class FakeRun:
        layout = BlockLayout(2, 1, shared_dims=1)
        decode = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Unflatten(1, (1, 2, 2)))
        config = SimpleNamespace(reg="universal", alpha_cl=0.0)

        def __init__(self):
            self.model = torch.nn.Linear(1, 1)
            self.model.encode, self.model.classify, self.model.decode = (
                (lambda v: v.flatten(1)[:, :3]),
                (lambda z: z[:, :2]),
                self.decode,
            )

        def data(self, split):
            return data

    named = latent_grid(FakeRun(), None, samples=1, steps=3).factors
    assert [n for n, _ in named] == ["x", "y", "class"] and all(mi > 0.9 for _, mi in named)


@pytest.mark.slow
def test_sweep_without_decoder_fits_a_posthoc_decoder_once(tiny_args, tmp_path, monkeypatch):
    runner = CliRunner()
    assert runner.invoke(main, ["train", *tiny_args, "--name", "b", "--epochs", "1"]).exit_code == 0
    run_dir = tmp_path / "runs" / "b"
    args = [
        *"sweep --class 0 --run".split(),
        str(run_dir),
        *"--samples 2 --steps 3 --dims 0,19 --out".split(),
        str(tmp_path / "rep"),
    ]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "probability sweeps only" in res.output
    files = sorted(p.name for p in (tmp_path / "rep" / "sweep_class_0").iterdir())
    # pictures of the class's own dims 0 and 1; probabilities only for the swept dims 0 and 19
    assert files == [
        "dim0_probs.png",
        "dim19_probs.png",
        "pictures_dim0.png",
        "pictures_dim1.png",
        "pull.png",
    ]
    info = json.loads((run_dir / "posthoc_decoder.json").read_text())
    assert 0 < info["test_mse"] < info["mean_image_mse"]  # it explains more than the mean image
    text = (tmp_path / "rep" / "sweep_class_0.html").read_text()
    assert "post-hoc decoder" in text and f"{info['test_mse']:.4f}" in text

    # the second sweep reads the cached decoder instead of fitting again
    import herd_cls.analysis.posthoc as posthoc

    monkeypatch.setattr(
        posthoc, "fit_decoder", lambda *a, **k: pytest.fail("refitted a cached decoder")
    )
    assert runner.invoke(main, args).exit_code == 0


def test_exemplars_are_ordered_by_the_dim_and_span_its_range():
    from herd_cls.analysis.sweep import exemplars

    z = torch.tensor([[3.0, 0.0], [1.0, 5.0], [2.0, -1.0], [0.0, 2.0], [4.0, 1.0]])
    x = torch.arange(5.0).view(5, 1, 1, 1)  # image i is the constant i
    out = exemplars(x, z, [0, 1], count=3)
    assert out["values"].tolist() == [[0.0, 2.0, 4.0], [-1.0, 1.0, 5.0]]
    assert out["images"].flatten(1).tolist() == [[3.0, 2.0, 4.0], [2.0, 4.0, 1.0]]


def test_posthoc_decoder_fit_beats_the_mean_image():
    from herd_cls.analysis.posthoc import fit_decoder

    torch.manual_seed(0)
    z = torch.randn(400, 3)
    basis = torch.rand(3, 1, 6, 6)
    x = torch.sigmoid(torch.einsum("nk,kchw->nchw", z, basis))  # images that z determines
    decoder, info = fit_decoder(z[:300], x[:300], z[300:], x[300:], steps=300)
    assert info["test_mse"] < 0.2 * info["mean_image_mse"]
    assert decoder(z[:2]).shape == (2, 1, 6, 6) and not decoder.training


def test_decoded_block_effect_sees_which_block_moves_the_image():
    """A decoder that draws class 0's block into the image and ignores class 1's block: class 0's
    images change only through their own block, class 1's only through the other one."""
    from herd_cls.analysis.sweep import decoded_block_effect

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.classify = torch.nn.Linear(4, 2)
            self.decode = lambda z: (z[:, :2].sum(1) * 0.1).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)

    blocks = BlockLayout(2, 2)
    z, y = torch.randn(10, 4), torch.tensor([0, 1] * 5)
    effect = decoded_block_effect(Toy(), z, y, blocks, torch.full((4,), 0.5), span=2.0)
    # moving one dim of block 0 by 2 std each way changes every pixel by 0.1 * 2 * 2 * 0.5
    torch.testing.assert_close(effect[:, 0], torch.full((2,), 0.2))
    torch.testing.assert_close(effect[:, 1], torch.zeros(2))
    assert sweep_specificity(effect)["sweep_specificity_per_class"] == pytest.approx([1.0, 0.0])


def test_sweep_change_golden():
    """Only dim 0 drives the logits (z_0, 0): at z = 0, p_0 = 1/2, and moving dim 0 to -2, 0, +2
    gives sigmoid(-2), 1/2, sigmoid(2), a mean |change| of (2 sigmoid(2) - 1) / 3 in both classes'
    probabilities and of 4/3 in class 0's logit; every other dim moves nothing. Chunks of 2 dims
    give the same as one chunk."""
    import math

    from herd_cls.analysis.sweep import sweep_change

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(1.0))

        def classify(self, z):
            return torch.stack([self.w * z[:, 0], torch.zeros(len(z))], 1)

    z, std = torch.zeros(3, 5), torch.ones(5)
    probs = sweep_change(Toy(), z, range(5), std, 2.0, 3, probabilities=True, chunk=2)
    expected = (2 / (1 + math.exp(-2)) - 1) / 3
    torch.testing.assert_close(probs[0], torch.tensor([expected, expected]))
    assert probs[1:].abs().max().item() == 0
    logits = sweep_change(Toy(), z, [0, 3], std, 2.0, 3)
    torch.testing.assert_close(logits, torch.tensor([[4 / 3, 0.0], [0.0, 0.0]]))


@pytest.mark.parametrize("classes,expected", [(10, list(range(20))), (100, [14, 15])])
def test_auto_dims_draw_every_dim_of_a_small_latent_and_the_class_block_of_a_wide_one(
    classes, expected
):
    """--dims auto: 10 classes of 2 dims (20 <= 32) draws every dim; 100 classes draws class 7's
    block only (no shared dims), so the page costs the same at 100 classes as at 10."""
    from herd_cls.commands import parse_dims

    run = SimpleNamespace(layout=BlockLayout(classes, 2))
    assert parse_dims(run, "auto", 7) == expected


def test_a_block_heads_loss_block_effect_moves_one_logit_and_equals_the_generic_computation():
    from herd_cls.analysis.sweep import loss_block_effect
    from herd_cls.heads import BlockHead

    torch.manual_seed(0)
    layout = BlockLayout(5, 2, shared_dims=1)
    head = BlockHead(layout, hidden=8)
    z, y = torch.randn(40, layout.latent_dim), torch.arange(40) % 5
    fast = loss_block_effect(head, z, y, layout, 0.3)
    # a plain callable: every logit recomputed
    generic = loss_block_effect(lambda v: head(v), z, y, layout, 0.3)
    torch.testing.assert_close(fast, generic, rtol=1e-5, atol=1e-6)
    assert fast.shape == (40, 5) and (fast > 0).all()
