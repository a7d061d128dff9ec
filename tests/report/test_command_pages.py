"""The single-command pages end to end: the attribute page, its figures and alignment. The sweep
pages are tested in analysis/test_sweep.py, the robustness page in analysis/test_robustness.py and
analysis/test_attacks.py."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from herd_cls.cli import main
from html_pages import check_page

pytestmark = pytest.mark.slow


def test_attribute_command_page_and_alignment(tiny_args, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["train", *tiny_args, "--name", "a", "--epochs", "1"]).exit_code == 0
    res = runner.invoke(
        main,
        [
            "attribute",
            "--run",
            str(tmp_path / "runs" / "a"),
            *"--method saliency --samples 2 --out".split(),
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 0, res.output
    page = Path(res.output.strip().splitlines()[-1])
    overall = float(res.output.strip().splitlines()[-2].split()[-1])
    assert 0 <= overall <= 1
    assert len(check_page(page).refs) == 1 + 10  # the latent matrix and one overlay strip per class
