"""README's Python examples run as written: the regularizer in a training step, and a trained run
rebuilt from its folder (a tiny run stands in for runs/latest)."""

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from herd_cls.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_regularizer_example_gives_a_penalty_that_trains_the_encoder():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 20))
    names = {"F": F, "encoder": encoder, "head": nn.Sequential(nn.Tanh(), nn.Linear(20, 10))}
    names |= {"x": torch.rand(8, 1, 8, 8), "y": torch.arange(8) % 10}
    exec(compile(_examples()[0], str(README), "exec"), names)
    loss = names["loss"]
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert encoder[1].weight.grad.abs().sum() > 0


def test_the_run_example_rebuilds_a_trained_run(tmp_path, tiny_args):
    from click.testing import CliRunner

    done = CliRunner().invoke(main, ["train", *tiny_args, "--name", "tiny"])
    assert done.exit_code == 0, done.output
    code = _examples()[1].replace('"runs/latest"', repr(str(tmp_path / "runs" / "tiny")))
    names = {"images": torch.rand(5, 1, 16, 16)}
    exec(compile(code, str(README), "exec"), names)
    run = names["run"]
    assert names["z"].shape == (5, run.layout.latent_dim)
    assert run.classify(names["z"]).shape == (5, run.layout.num_classes)
    pictures = names["pictures"]
    own = run.layout.block(3).tolist() + run.layout.shared.tolist()
    assert pictures.target == 3 and sorted(pictures.dims) == sorted(own)
