"""The decoder diagnostics (live dims, blank reconstructions) and the collapse warning of
training."""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from herd_cls.cli import main
from herd_cls.diagnostics import blank_recon, collapse_reasons, decoder_diagnostics
from herd_cls.run import read_metrics


class _AE(torch.nn.Module):
    def __init__(self, flat=False):
        super().__init__()
        self.enc = torch.nn.Linear(16, 3)
        self.dec = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Sigmoid())
        if flat:
            torch.nn.init.zeros_(self.dec[0].weight)

    def encode(self, x):
        return self.enc(x.flatten(1))

    def decode(self, z):
        return self.dec(z).view(len(z), 1, 4, 4)


def test_decoder_diagnostics_count_live_dims():
    torch.manual_seed(0)
    model, x = _AE(), torch.rand(8, 1, 4, 4)
    with torch.no_grad():
        model.dec[0].weight[:, 2] *= 1e-3  # dim 2 hardly moves the image
    out = decoder_diagnostics(model, x, "bce")
    assert out["decoder_live_dims"] == 2 and len(out["decoder_jacobian_columns"]) == 3
    assert out["decoder_jacobian_scale"] > 0 and 0 <= out["penalty_offdiag_share"] <= 1
    flat = decoder_diagnostics(_AE(flat=True), x, "bce")
    assert flat["decoder_jacobian_scale"] == 0 and flat["decoder_live_dims"] == 0


def test_collapse_reasons():
    assert collapse_reasons(0.02, 0.14, 1.0, 1.5) == []
    assert "blank-image" in collapse_reasons(0.14, 0.14, 1.0, 1.5)[0]
    assert "Jacobian scale" in collapse_reasons(0.02, 0.14, 0.001, 1.0)[0]
    images = torch.bernoulli(torch.full((50, 1, 4, 4), 0.2))
    assert blank_recon(images.mean(0), images, "mse") == pytest.approx(
        float(images.var(0, unbiased=False).mean()), rel=1e-5
    )


def train(args: list[str], run: Path):
    """``herd-cls train ARGS`` into the folder ``run``; the CLI's result (it must exit 0)."""
    res = CliRunner().invoke(
        main, [*args, "--out-dir", str(run.parent), "--name", run.name], catch_exceptions=False
    )
    assert res.exit_code == 0, res.output
    return res


@pytest.mark.slow
def test_training_warns_when_the_decoder_collapses(tmp_path):
    """A decoder that never learns (alpha_ae 0: its output stays at the initial sigmoid's grey)
    reconstructs worse than the mean image: training says so on stderr and in summary.json."""
    args = (
        "train --dataset shapes --num-samples 400 --backbone conv --decoder --recon-loss bce "
        "--reg none --alpha-ae 0 --epochs 2 --warmup 1 --batch-size 64 --dims-per-class 2 "
        "--device cpu"
    ).split()
    res = train(args, tmp_path / "c")
    assert res.stderr.count("warning: the decoder collapsed") == 1
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["decoder_collapse"] and "blank-image" in summary["decoder_collapse"][0]
    rows = read_metrics(tmp_path / "c")
    # warm-up: not checked
    assert summary["decoder_collapse_seen"] and rows[-1]["collapsed"] and "collapsed" not in rows[0]
    assert {
        "decoder_jacobian_scale",
        "decoder_live_dims",
        "penalty_offdiag_share",
        "penalty_diag_norm",
    } <= set(rows[0])


def test_channels_last_gives_the_same_outputs():
    from herd_cls.models import create_model

    torch.manual_seed(0)
    sizes = dict(num_classes=3, in_chans=1, image_size=32, latent_dim=10, shared_dims=1)
    model = create_model("burgess", head="mlp", decoder=True, **sizes)
    x = torch.rand(4, 1, 32, 32)
    z, out = model.encode(x), model.decode(model.encode(x))
    model.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(model.encode(xc), z, atol=1e-5)
    assert torch.allclose(model.decode(model.encode(xc)), out, atol=1e-5)


@pytest.mark.slow
def test_constant_lr_schedule_and_channels_last_train(tmp_path):
    args = (
        "train --dataset shapes --num-samples 300 --backbone burgess --decoder --head mlp "
        "--latent-dim 4 --shared-dims 1 --recon-loss bce --reg universal --wrt decoder-output "
        "--penalty-samples 8 --epochs 2 --warmup 1 --ramp 0 --lr-schedule constant "
        "--channels-last --batch-size 64 --device cpu"
    ).split()
    train(args, tmp_path / "k")
    rows = read_metrics(tmp_path / "k")
    assert rows[1]["train_penalty"] > 0 and 0 <= rows[1]["penalty_diag_imbalance"] <= 1
    state = torch.load(tmp_path / "k" / "checkpoint.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-3)


def test_the_early_blank_plateau_is_no_collapse_until_the_decoder_has_drawn_or_training_ends():
    from herd_cls.diagnostics import check_collapse

    blank = 0.14
    rows = [
        {"epoch": 1, "val_recon": 0.139, "decoder_jacobian_scale": 0.3},
        {"epoch": 2, "val_recon": 0.139, "decoder_jacobian_scale": 0.3},
    ]
    # still learning
    assert check_collapse(rows, warmup=1, blank=blank) == [] and rows[-1]["collapsed"] is False
    # never learnt
    assert "blank-image" in check_collapse(rows, warmup=1, blank=blank, final=True)[0]
    rows += [
        {"epoch": 3, "val_recon": 0.03, "decoder_jacobian_scale": 1.0},
        {"epoch": 4, "val_recon": 0.14, "decoder_jacobian_scale": 1.0},
    ]
    assert check_collapse(rows[:3], 1, blank) == []
    assert "blank-image" in check_collapse(rows, 1, blank)[0]  # drew, then lost it
