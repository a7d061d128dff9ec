import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from herd_cls import load_run
from herd_cls.cli import main
from html_pages import check_page


def fgsm_reference(model, x, y, eps):
    """Independent FGSM: one signed-gradient step of the cross-entropy, clipped to [0, 1]."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), x)
    return (x + eps * g.sign()).clamp(0, 1).detach()


def pgd_reference(model, x, y, eps, steps, seed):
    """Independent L-inf PGD with a random start (Madry et al.), step 2.5 eps / steps."""
    gen = torch.Generator().manual_seed(seed)
    adv = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(adv), y), adv)
        adv = torch.min(
            torch.max(adv.detach() + 2.5 * eps / steps * g.sign(), x - eps), x + eps
        ).clamp(0, 1)
    return adv


def test_fgsm_agrees_exactly_with_independent_implementation(toy, attack_toy):
    model, encoder, x, y = toy
    res = attack_toy(["fgsm"], [0.05, 0.1])
    for eps in (0.05, 0.1):
        ours = (model(fgsm_reference(model, x, y, eps)).argmax(1) == y).float().mean().item()
        assert res["attacks"]["fgsm"][str(eps)]["robust_accuracy"] == ours


def test_pgd_agrees_with_independent_implementation_within_tolerance(toy, attack_toy):
    # random starts differ, so the two may disagree on a few samples: tolerance 5 points
    model, encoder, x, y = toy
    res = attack_toy(["pgd-linf"], [0.05], steps=10)
    ours = (
        (model(pgd_reference(model, x, y, 0.05, 10, seed=1)).argmax(1) == y).float().mean().item()
    )
    assert abs(res["attacks"]["pgd-linf"]["0.05"]["robust_accuracy"] - ours) <= 0.05


def test_sanity_checks_hold_and_latent_shares_add_up(toy, attack_toy):
    model, encoder, x, y = toy
    res = attack_toy(["fgsm", "pgd-linf", "pgd-l2", "apgd-ce"], [0, 0.05, 0.3, 1.0], steps=5)
    failed = [c for c in res["checks"] if c["verdict"] != "pass"]
    assert not failed, failed
    row = res["attacks"]["pgd-linf"]["0.05"]
    present = [c for c in range(4) if (y == c).any()]
    assert len(present) >= 2
    for c in present:
        parts = [row["latent_shift"][p][c] for p in ("own", "other", "shared")]
        assert sum(parts) == pytest.approx(1.0)
    assert sum(map(sum, row["confusion"])) == len(y)
    assert res["worst_case"]["linf"]["0.05"]["robust_accuracy"] <= min(
        res["attacks"][a]["0.05"]["robust_accuracy"] for a in ("fgsm", "pgd-linf", "apgd-ce")
    )


@pytest.mark.slow
def test_robustness_command_on_a_trained_run(tiny_args, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["train", *tiny_args, "--name", "a", "--epochs", "3"]).exit_code == 0
    run_dir = tmp_path / "runs" / "a"
    res = runner.invoke(
        main,
        [
            "robustness",
            "--run",
            str(run_dir),
            *(
                "--eps 0,0.05,0.3 --n-samples 40 --steps 5 --attack fgsm,pgd-linf,apgd-ce,square "
                "--queries 100 --transfer-from"
            ).split(),
            str(run_dir),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "pass, 0 FLAG; gradient masking: no sign of it" in res.output
    assert "    FLAG  " not in res.output
    assert "pass  unbounded pgd-linf (eps 1) leaves no image correct" in res.output
    saved = json.loads((run_dir / "robustness.json").read_text())
    assert saved["attacks"]["pgd-linf"]["0.0"]["robust_accuracy"] == saved["clean"]["accuracy"]
    assert saved["attacks"]["apgd-ce"]["0.3"]["robust_accuracy"] <= 0.1
    # crafted on the run itself, the transfer attack is the white-box one
    assert (
        saved["attacks"]["transfer-pgd-linf"]["0.05"]["correct"]
        == saved["attacks"]["pgd-linf"]["0.05"]["correct"]
    )
    assert saved["settings"]["transfer_from"] == str(run_dir.resolve())
    # the classifier a run exposes is what was attacked: images in [0, 1] -> logits, eval mode
    run = load_run(run_dir)
    assert not run.classifier().training
    page = Path(res.output.strip().splitlines()[-1])

    # overall curves, gradient norms, confusion, one curve per class
    assert len(check_page(page).images) == 3 + 10
    assert "Gradient masking: <b>no sign</b> of it" in page.read_text()

    bad = runner.invoke(main, ["robustness", "--run", str(run_dir), "--eps", "-0.1"])
    assert bad.exit_code != 0 and "outside [0, 1]" in bad.output and "Traceback" not in bad.output
