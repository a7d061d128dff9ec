"""The report command end to end on tiny runs: pages parse, every link and image exists."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from herd_cls.cli import main
from html_pages import check_page

pytestmark = pytest.mark.slow


@pytest.fixture
def toy_metric():
    """One registry entry, removed afterwards: the share of test images whose z[0] is positive."""
    from herd_cls.analysis.scores import METRICS, Metric, Score

    def compute(ev):
        positive = (ev.z[:, 0] > 0).float()
        return Score(
            float(positive.mean()),
            [float(positive[ev.y == c].mean()) for c in range(ev.layout.num_classes)],
        )

    METRICS.add(
        Metric("toy_positive_z0", "toy share of positive z0", compute, chance=lambda layout: 0.5)
    )
    yield
    METRICS.unregister("toy_positive_z0")


def test_report_with_compare(tiny_args, tmp_path, toy_metric):
    runner = CliRunner()
    assert runner.invoke(main, ["train", *tiny_args, "--name", "herd", "--decoder"]).exit_code == 0
    assert (
        runner.invoke(main, ["train", *tiny_args, "--name", "base", "--reg", "none"]).exit_code == 0
    )
    runs, out = tmp_path / "runs", tmp_path / "report"
    rob = runner.invoke(
        main,
        [
            "robustness",
            "--run",
            str(runs / "herd"),
            *"--eps 0,0.1 --attack fgsm --n-samples 20 --out".split(),
            str(out),
        ],
    )
    assert rob.exit_code == 0, rob.output
    res = runner.invoke(
        main,
        ["report", "--run", str(runs / "herd"), "--compare", str(runs / "base"), "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    index = Path(res.output.strip().splitlines()[-1])
    assert index == out / "index.html"
    pages = sorted(out.glob("*.html"))
    assert {p.name for p in pages} == {"index.html", "robustness.html"} | {
        f"class_{c}.html" for c in range(10)
    }
    for page in pages:
        assert check_page(page).refs, page
    text = (out / "class_3.html").read_text()
    # both runs; class 3 owns dims 6 and 7
    assert "herd" in text and "base" in text and "6, 7" in text
    assert (out / "figures" / "run0_sweep_3_6_img.png").is_file()  # the decoder run's image sweeps
    # which block moves class 3's images: the decoder run's bars, its own-block share the class's
    # specificity
    assert "run0_block_effect_3.png" in text and "run1_block_effect_3.png" not in text
    share = float(re.search(r"The own block makes ([0-9.]+) of the change", text).group(1))
    cell = re.search(r"<td[^>]*>image sweep specificity[^<]*</td><td>([^<]*)</td>", text).group(1)
    assert 0 <= share <= 1 and share == pytest.approx(float(cell), abs=1e-3)
    # only herd was attacked
    assert "run0_robustness_3.png" in text and "run1_robustness_3.png" not in text
    assert 'href="robustness.html"' in index.read_text()
    # image sweep specificity: a number for the decoder run, a dash for the run without a decoder
    row = re.search(
        r"<td[^>]*>image sweep specificity[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>",
        index.read_text(),
    )
    assert row and 0 <= float(row.group(1)) <= 1 and row.group(2) == "–"
    # a metric registered in one entry reaches the index (with its chance level), every class page
    # and the CLI
    row = re.search(
        r"<td[^>]*>toy share of positive z0</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>",
        index.read_text(),
    )
    assert row and all(0 <= float(v) <= 1 for v in row.groups()[:2]) and row.group(3) == "0.500"
    assert "toy share of positive z0" in text and "toy share of positive z0" in res.output


def test_report_refuses_runs_on_different_classes(tiny_args, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["train", *tiny_args, "--name", "d", "--epochs", "1"]).exit_code == 0
    assert (
        runner.invoke(
            main, ["train", *tiny_args, "--name", "s", "--epochs", "1", "--dataset", "shapes"]
        ).exit_code
        == 0
    )
    res = runner.invoke(
        main,
        [
            "report",
            "--run",
            str(tmp_path / "runs" / "d"),
            "--compare",
            str(tmp_path / "runs" / "s"),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code != 0 and "same classes" in res.output and "Traceback" not in res.output


def test_report_draws_chosen_classes_and_lists_every_class_worst_first(tiny_args, tmp_path):
    from herd_cls import commands
    from herd_cls.run import load_run

    runner = CliRunner()
    assert runner.invoke(main, ["train", *tiny_args, "--name", "r", "--epochs", "1"]).exit_code == 0
    out = tmp_path / "report"
    (out).mkdir()
    (out / "class_5.html").write_text("a page of an earlier report")  # not drawn now: removed
    index, (analysis,) = commands.report(
        [load_run(tmp_path / "runs" / "r")], "saliency", str(out), True, "3,7"
    )
    assert {p.name for p in out.glob("*.html")} == {"index.html", "class_3.html", "class_7.html"}
    html = index.read_text()
    rows = [int(c) for c in re.findall(r'<tr><td data-sort="(\d+)">', html)]
    purity = analysis.purity.per_class
    assert sorted(rows) == list(range(10)) and [float(purity[c]) for c in rows] == sorted(
        float(p) for p in purity
    )
    assert set(re.findall(r'href="class_(\d+)\.html"', html)) == {"3", "7"}
    assert "Pages are drawn for 2 of the 10 classes" in html and "--classes all" in html
    check_page(index)
    bad = runner.invoke(
        main,
        [
            "report",
            "--run",
            str(tmp_path / "runs" / "r"),
            "--classes",
            "3,eleven",
            "--out",
            str(out),
        ],
    )
    assert (
        bad.exit_code != 0
        and "class 'eleven' is not in this run's data" in bad.output
        and "Traceback" not in bad.output
    )


def test_worst_classes_put_the_lowest_purity_first_and_unmeasured_last():
    import torch

    from herd_cls.analysis.runs import worst_classes
    from herd_cls.purity import Purity

    per_class = torch.tensor([0.5, float("nan"), 0.1, 0.9, 0.3])
    p = Purity(
        per_class, torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(5, 2, 2), "exact"
    )
    assert worst_classes(p, 3) == [2, 4, 0] and worst_classes(p, 10) == [2, 4, 0, 3, 1]
