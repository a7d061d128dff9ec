from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from herd_cls.analysis.sweep import block_sweep_effect, sweep
from herd_cls.cli import main
from html_pages import check_page
from herd_cls.metrics import sweep_specificity
from herd_cls.regularizer import class_blocks


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
    blocks = class_blocks(3, 6)
    model = Identity()
    model.classify = lambda z: z.view(len(z), 3, 2).sum(-1)
    z, y = torch.randn(30, 6), torch.arange(30) % 3
    effect = block_sweep_effect(model, z, y, blocks, torch.ones(6))
    assert sweep_specificity(effect)["sweep_specificity"] == pytest.approx(1.0)
    # and a head that mixes all dims into every logit is far from specific
    mix = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    model.classify = lambda z: z @ mix
    assert sweep_specificity(block_sweep_effect(model, z, y, blocks, torch.ones(6)))["sweep_specificity"] < 0.7


@pytest.mark.slow
def test_sweep_command_writes_a_page_with_existing_images(tiny_args, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["train", *tiny_args, "--name", "a", "--decoder"]).exit_code == 0
    run, out = str(tmp_path / "runs" / "a"), tmp_path / "rep"
    res = runner.invoke(main, ["sweep", "--class", "3", "--run", run, "--samples", "2", "--steps", "3",
                               "--dims", "block", "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = Path(res.output.strip().splitlines()[-1])
    assert page == out / "sweep_class_3.html" and "block dims [6, 7]" in res.output
    parser = check_page(page, min_bytes=1000)
    assert len(parser.images) == 4  # an image grid and a probability plot for each of the 2 block dims

    bad = runner.invoke(main, ["sweep", "--class", "12", "--run", run])
    assert bad.exit_code != 0 and "valid classes: 0 (0), 1 (1)" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
def test_sweep_without_decoder_shows_probabilities_only(tiny_args, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["train", *tiny_args, "--name", "b", "--epochs", "1"]).exit_code == 0
    res = runner.invoke(main, ["sweep", "--class", "0", "--run", str(tmp_path / "runs" / "b"), "--samples", "2",
                               "--steps", "3", "--dims", "0,19", "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "probability sweeps only" in res.output
    assert sorted(p.name for p in (tmp_path / "rep" / "sweep_class_0").iterdir()) == ["dim0_probs.png",
                                                                                      "dim19_probs.png"]
