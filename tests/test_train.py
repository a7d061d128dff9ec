"""End-to-end: the train command, run folders, load_run, resume and reproducibility, on tiny
data."""

import json
import os

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import herd_cls.train as train_module
from herd_cls import load_run
from herd_cls.cli import main

pytestmark = pytest.mark.slow


def run_cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _interrupted_in_epoch_2(monkeypatch, args):
    """Run ``train`` with a Ctrl-C at the end of epoch 2 (the second evaluate call)."""
    real_evaluate, calls = train_module.evaluate, []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*a, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "evaluate", interrupted)
        return CliRunner().invoke(main, ["train", *args])


def test_train_writes_a_complete_run_folder(tiny_args, tmp_path):
    res = run_cli("train", *tiny_args, "--name", "a", "--decoder", "--wrt", "both")
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "a"
    assert res.output.strip().splitlines()[-1].startswith(f"run {run}  test accuracy")
    assert os.readlink(tmp_path / "runs" / "latest") == "a"
    for name in (
        "config.yaml",
        "data.json",
        "checkpoint.pt",
        "model.safetensors",
        "metrics.jsonl",
        "metrics.csv",
        "summary.json",
    ):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["penalty_ramp"] == 0 and rows[1]["penalty_ramp"] == 0.5  # warm-up 1, ramp 2
    assert rows[1]["train_penalty"] > 0 and rows[1]["val_recon"] > 0
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    summary = json.loads((run / "summary.json").read_text())
    assert {"test_accuracy", "block_purity", "train_seconds"} <= set(summary)
    assert 0 <= summary["block_purity"] <= 1 and summary["train_seconds"] > 0
    # HeRD with the decoder's Hessian takes its penalty on 16 images of a batch, saved resolved
    from herd_cls.regularizers.herd_objects import DECODER_PENALTY_SAMPLES

    assert load_run(run).config.penalty_samples == DECODER_PENALTY_SAMPLES == 16


def test_load_run_rebuilds_the_trained_model(tiny_args, tmp_path):
    assert run_cli("train", *tiny_args, "--name", "a", "--decoder").exit_code == 0
    run = load_run(tmp_path / "runs" / "latest")
    assert run.config.latent_dim == 20 and run.config.shared_dims == 0 and run.class_names[3] == "3"
    assert run.layout.block(3).tolist() == [6, 7]
    test = run.data("test")
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([test[i][1] for i in range(len(test))])
    with torch.no_grad():
        z = run.encode(x)
        acc = (run.classify(z).argmax(1) == y).float().mean().item()
        assert run.decode(z).shape == x.shape
    assert acc == pytest.approx(run.summary["test_accuracy"], abs=1e-6)


def test_same_seed_same_weights_and_resume_equals_uninterrupted(tiny_args, tmp_path, monkeypatch):
    assert run_cli("train", *tiny_args, "--name", "full").exit_code == 0
    assert run_cli("train", *tiny_args, "--name", "again").exit_code == 0
    runs = tmp_path / "runs"
    full = load_file(runs / "full" / "model.safetensors")
    again = load_file(runs / "again" / "model.safetensors")
    assert all(torch.equal(full[k], again[k]) for k in full)

    # interrupt the third run during epoch 2: its epoch-1 checkpoint stays, latest is untouched
    res = _interrupted_in_epoch_2(monkeypatch, [*tiny_args, "--name", "cut"])
    assert res.exit_code == 130 and "Traceback" not in res.output
    assert os.readlink(runs / "latest") == "again" and not (runs / "cut" / "summary.json").exists()
    res = run_cli("train", "--resume", str(runs / "cut"), "--epochs", "2", "--quiet")
    assert res.exit_code == 0, res.output
    resumed = load_file(runs / "cut" / "model.safetensors")
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert os.readlink(runs / "latest") == "cut"


def test_checkpoint_loads_with_weights_only(tiny_args, tmp_path):
    res = CliRunner().invoke(main, ["train", *tiny_args, "--name", "a", "--epochs", "1"])
    # the block head: nothing to warn about
    assert res.exit_code == 0 and "warning" not in res.stderr
    state = torch.load(tmp_path / "runs" / "a" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 0 and "model" in state and "optimizer" in state
    assert json.loads((tmp_path / "runs" / "a" / "summary.json").read_text())["warnings"] == []


@pytest.mark.parametrize(
    "head,reason",
    [("linear", "cannot give each class its own curvature"), ("mlp", "keeps purity low")],
)
def test_class_herd_on_a_head_that_cannot_carry_it_warns_in_one_line(
    tiny_args, tmp_path, head, reason
):
    res = CliRunner().invoke(
        main, ["train", *tiny_args, "--name", head, "--epochs", "1", "--head", head]
    )
    assert res.exit_code == 0
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert (
        len(warnings) == 1
        and f"--head {head} {reason}" in warnings[0]
        and "use --head block" in warnings[0]
    )
    summary = json.loads((tmp_path / "runs" / head / "summary.json").read_text())
    assert len(summary["warnings"]) == 1 and reason in summary["warnings"][0]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--backbone", "resnet_18"], "unknown backbone 'resnet_18'; did you mean: resnet18"),
        (["--dataset", "imagenet"], "'imagenet' is not one of 'digits', 'shapes'"),
        (["--latent-dim", "23"], "does not split into 10 class blocks"),
        (["--num-classes", "4"], "--num-classes 4 does not match the 10 classes of digits"),
        (["--dataset", "mnist", "--data-root", "/nonexistent"], "add --download"),
        (["--config", "/nonexistent.yaml"], "cannot read config /nonexistent.yaml"),
        (["--reg", "beta-vae"], "--reg beta-vae regularizes a decoder; add --decoder"),
        (["--lr", "1e30", "--epochs", "3"], "the loss became"),
        # F.binary_cross_entropy raises on NaN images; a diverged BCE run must still end in one line
        (["--lr", "1e30", "--epochs", "3", "--decoder", "--recon-loss", "bce"], "the loss became"),
        (
            (
                "--lr 1e30 --epochs 3 --decoder --recon-loss bce --wrt autoencoder --probes 2 "
                "--warmup 0"
            ).split(),
            "the loss became",
        ),
    ],
)
def test_bad_input_gives_one_error_line_and_no_latest(tiny_args, tmp_path, extra, message):
    res = CliRunner().invoke(main, ["train", *tiny_args, *extra])
    assert res.exit_code != 0
    assert "Traceback" not in res.output and (
        res.exception is None or isinstance(res.exception, SystemExit)
    )
    assert message in res.output.replace("\n", " ")
    assert not (tmp_path / "runs" / "latest").exists()


def test_help_explains_every_option():
    from dataclasses import fields

    from herd_cls.config import Config, option_name

    res = run_cli("train", "--help")
    for f in fields(Config):
        assert option_name(f.name) in res.output


def test_pre_logits_latent_with_probes(tiny_args, tmp_path):
    res = run_cli(
        "train",
        *tiny_args,
        "--name",
        "p",
        "--epochs",
        "1",
        "--latent",
        "pre-logits",
        "--probes",
        "2",
    )
    assert res.exit_code == 0, res.output
    run = load_run(tmp_path / "runs" / "p")
    # the conv backbone has 256 pre-logit features: 10 blocks of 25 dims, 6 left over as shared dims
    assert (run.config.latent_dim, run.config.shared_dims) == (256, 6)
    assert run.layout.block(9).tolist() == list(range(225, 250)) and run.config.probes == 2


def test_pre_logits_block_head_trains_and_measures_exactly(tiny_args, tmp_path):
    """A 256-wide block-head latent: the penalty is the exact one (no probes), and summary.json's
    purity is exact |H| on as many test images as a narrow run's, with its standard error."""
    from herd_cls.evaluation import EVAL_HESSIAN_SAMPLES

    res = run_cli(
        "train",
        *tiny_args,
        "--name",
        "w",
        "--epochs",
        "1",
        "--latent",
        "pre-logits",
        "--warmup",
        "0",
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "runs" / "w" / "summary.json").read_text())
    run = load_run(tmp_path / "runs" / "w")
    assert run.config.latent_dim == 256 and run.config.probes is None
    assert summary["purity_method"].startswith("exact")
    assert summary["purity_samples"] == min(len(run.data("test")), EVAL_HESSIAN_SAMPLES)
    assert 0 < summary["block_purity_standard_error"] < 0.2


@pytest.mark.parametrize(
    "reg", ["hessian-penalty", "beta-vae", "beta-vae-capacity", "factor-vae", "beta-tcvae"]
)
def test_baselines_train_and_reload(tiny_args, tmp_path, reg):
    res = run_cli(
        "train",
        *tiny_args,
        "--name",
        reg,
        "--decoder",
        "--reg",
        reg,
        "--warmup",
        "0",
        "--ramp",
        "0",
    )
    assert res.exit_code == 0, res.output
    rows = [
        json.loads(line)
        for line in (tmp_path / "runs" / reg / "metrics.jsonl").read_text().splitlines()
    ]
    assert all(r["train_penalty"] > 0 and r["val_recon"] > 0 for r in rows)
    run = load_run(tmp_path / "runs" / reg)
    assert run.model.variational == (reg != "hessian-penalty")
    assert run.config.alpha_reg > 0  # the per-method default is saved resolved
    x = torch.stack([run.data("test")[i][0] for i in range(4)])
    assert torch.equal(run.encode(x), run.encode(x))  # eval mode encodes the mean, no sampling


def test_factor_vae_resume_restores_the_discriminator(tiny_args, tmp_path, monkeypatch):
    args = [*tiny_args, "--decoder", "--reg", "factor-vae", "--warmup", "0"]
    assert run_cli("train", *args, "--name", "full").exit_code == 0
    assert _interrupted_in_epoch_2(monkeypatch, [*args, "--name", "cut"]).exit_code == 130
    state = torch.load(tmp_path / "runs" / "cut" / "checkpoint.pt", weights_only=True)
    # under its own key
    assert {"discriminator", "discriminator_optimizer"} <= set(state["regularizer"])
    assert (
        run_cli(
            "train", "--resume", str(tmp_path / "runs" / "cut"), "--epochs", "2", "--quiet"
        ).exit_code
        == 0
    )
    full = load_file(tmp_path / "runs" / "full" / "model.safetensors")
    resumed = load_file(tmp_path / "runs" / "cut" / "model.safetensors")
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_a_step_budget_trains_exactly_that_many_steps(tiny_args, tmp_path):
    # 300 digits leave 195 training images: 6 batches of 32 per epoch, so 10 steps are 2 epochs, the
    # second cut short
    res = run_cli("train", *tiny_args, "--name", "s", "--steps", "10")
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "runs" / "s"
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert [float(s["step"]) for s in state["optimizer"]["state"].values()] == [10.0] * len(
        state["optimizer"]["state"]
    )
    assert (
        load_run(run_dir).config.epochs == 2
        and len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    )
