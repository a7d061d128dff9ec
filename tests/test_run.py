"""Run folders: every damaged file of a run gives one line naming the file, on every command that
loads it."""

import json

import pytest
import torch
from click.testing import CliRunner

from herd_cls.cli import main

pytestmark = pytest.mark.slow

DAMAGE = {
    "truncated weights": ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:100])),
    "corrupted weights": (
        "model.safetensors",
        lambda p: p.write_bytes(b"\xff" * 64 + p.read_bytes()[64:]),
    ),
    "foreign weights": ("model.safetensors", lambda p: _foreign_safetensors(p)),
    "pickle instead of safetensors": (
        "model.safetensors",
        lambda p: torch.save({"w": torch.zeros(2)}, p),
    ),
    "corrupted config": ("config.yaml", lambda p: p.write_text("epochs: [3\n")),
    "corrupted data description": ("data.json", lambda p: p.write_text('{"info": ')),
    "foreign data description": ("data.json", lambda p: p.write_text('{"something": 1}')),
    "corrupted summary": ("summary.json", lambda p: p.write_bytes(b"\x00\x01")),
}


def _foreign_safetensors(path):
    from safetensors.torch import save_file

    save_file({"encoder.weight": torch.zeros(3, 3)}, str(path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import TINY

    out = tmp_path_factory.mktemp("runs")
    res = CliRunner().invoke(
        main, ["train", *TINY, "--out-dir", str(out), "--name", "a", "--epochs", "1"]
    )
    assert res.exit_code == 0, res.output
    return out / "a"


COMMANDS = {
    "sweep": ["sweep", "--class", "0"],
    "attribute": ["attribute", "--method", "saliency"],
    "report": ["report"],
    "robustness": ["robustness", "--attack", "fgsm", "--eps", "0"],
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_damaged_run_file_gives_one_line_naming_it(trained, tmp_path, damage, command):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    name, spoil = DAMAGE[damage]
    spoil(run / name)
    res = CliRunner().invoke(
        main, [*COMMANDS[command], "--run", str(run), "--out", str(tmp_path / "r")]
    )
    # not an uncaught error
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], res.output


def test_a_damaged_checkpoint_refuses_to_resume_in_one_line(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:200])
    res = CliRunner().invoke(main, ["train", "--resume", str(run), "--epochs", "2", "--quiet"])
    assert res.exit_code == 1 and "checkpoint.pt" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    # a checkpoint of another kind of object: loads with weights_only, but is not this run's state
    torch.save({"model": {"x": torch.zeros(1)}}, run / "checkpoint.pt")
    res = CliRunner().invoke(main, ["train", "--resume", str(run), "--epochs", "2", "--quiet"])
    assert res.exit_code == 1 and "does not hold this run's training state" in res.output


def test_a_damaged_posthoc_cache_is_refitted(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    args = [
        *"sweep --class 0 --run".split(),
        str(run),
        "--out",
        str(tmp_path / "r"),
        "--dims",
        "block",
    ]
    assert CliRunner().invoke(main, args).exit_code == 0
    (run / "posthoc_decoder.safetensors").write_bytes(b"garbage")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert json.loads((run / "posthoc_decoder.json").read_text())["test_mse"] > 0
    from safetensors.torch import load_file

    assert load_file(run / "posthoc_decoder.safetensors")  # rewritten whole


def test_progress_bars_stay_out_of_logs(trained, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "robustness",
            "--run",
            str(trained),
            *"--attack fgsm --eps 0,0.1 --n-samples 20 --out".split(),
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "\r" not in res.output and "attacking" not in res.output  # stderr is not a terminal here
