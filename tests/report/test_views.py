"""What the report says about one tiny run: both purity views, the images behind a class mean,
reasons in place of by-construction numbers, the collapse banner; a universal decoder run; and a
real browser."""

import json
import re

import pytest
import torch
from click.testing import CliRunner

from browser import chromium, inspect_page
from conftest import TINY
from herd_cls.cli import main
from html_pages import check_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """One tiny default run (block head), a collapse reason and a training warning added to its
    summary, and its report."""
    tmp = tmp_path_factory.mktemp("views")
    runner = CliRunner()
    trained = runner.invoke(main, ["train", *TINY, "--out-dir", str(tmp / "runs"), "--name", "r"])
    assert trained.exit_code == 0, trained.output
    run = tmp / "runs" / "r"
    summary = json.loads((run / "summary.json").read_text())
    summary["decoder_collapse"] = ["decoded images are constant"]
    summary["warnings"] = ["--reg class with --head mlp keeps purity low"]  # as training writes it
    (run / "summary.json").write_text(json.dumps(summary))
    res = runner.invoke(main, ["report", "--run", str(run), "--out", str(tmp / "report")])
    assert res.exit_code == 0, res.output
    return {
        "run": run,
        "out": tmp / "report",
        "train": trained.output,
        "report": res.output,
        "summary": summary,
    }


def _cells(html: str, label: str) -> list[str]:
    row = re.search(rf"<tr><td[^>]*>{re.escape(label)}</td>(.*?)</tr>", html, re.S)
    assert row, label
    return re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))


def test_both_purity_views_with_chance_everywhere(reported):
    index = (reported["out"] / "index.html").read_text()
    chance = f"{(2 / 20) ** 2:.3f}"  # 10 classes of 2 dims: (n / d)^2
    for label in [
        "Hessian block purity (class mean)",
        "image purity, mean",
        "image purity, median",
    ]:
        value, expected_chance = _cells(index, label)
        assert 0 <= float(value.split(" ± ")[0]) <= 1 and expected_chance == chance
    # the class mean states its sampling error: positive, and small next to the value on hundreds of
    # images
    value, error = map(float, _cells(index, "Hessian block purity (class mean)")[0].split(" ± "))
    assert 0 < error < 0.1 * max(value, 0.1)
    median = float(_cells(index, "image purity, median")[0])
    overall = reported["summary"]["image_purity_median"]
    # report and training measure the same test images
    assert median == pytest.approx(overall, abs=0.02)
    # train's last lines: both views beside chance
    lines = reported["train"].strip().splitlines()
    mean_line = next(line for line in lines if line.startswith("block purity, class mean"))
    image_line = next(line for line in lines if line.startswith("per-image purity"))
    assert f"chance {chance}" in mean_line and f"chance {chance}" in image_line
    assert f"± {reported['summary']['block_purity_standard_error']:.3f}" in mean_line
    assert f"median {overall:.3f}" in image_line and lines[-1].startswith("run ")
    page = (reported["out"] / "class_4.html").read_text()
    assert _cells(page, "image purity, median")[1] == chance
    assert re.search(r'<img src="figures/run0_purity_hist_4.png"', page)


def test_class_page_names_the_images_that_carry_its_curvature(reported):
    from herd_cls.run import load_run

    run = load_run(reported["run"])
    test = run.data("test")
    for c in (0, 7):
        page = (reported["out"] / f"class_{c}.html").read_text()
        table = page.split("share of class mass</th></tr>")[1].split("</table>")[0]
        rows = [re.findall(r"<td>([^<]*)</td>", r) for r in table.split("<tr")[1:]]
        assert 1 <= len(rows) <= 8
        shares = [float(r[6]) for r in rows]
        # 3 decimals each
        assert shares == sorted(shares, reverse=True) and sum(shares) <= 1 + 5e-4 * len(shares)
        for rank, index, label, prediction, confidence, own, _ in rows:
            image, true = test[int(index)]
            assert int(true) == c and label == str(c)  # the named test image is of this class
            with torch.no_grad():
                probs = run.model(image[None]).softmax(1)[0]
            assert prediction == str(int(probs.argmax())) and float(confidence) == pytest.approx(
                float(probs.max()), abs=2e-3
            )
            assert 0 <= float(own) <= 1
        holders = re.search(r"(\d+) of its (\d+) measured images hold 90%", page)
        assert holders and 1 <= int(holders.group(1)) <= int(holders.group(2))


def test_by_construction_reasons_replace_numbers(reported):
    index = (reported["out"] / "index.html").read_text()
    for label in ["sweep specificity", "latent attribution alignment"]:
        cells = _cells(index, label)
        assert "by construction" in cells[0] and not re.fullmatch(r"[\d.]+", cells[0])
    value, chance = _cells(index, "own-block loss sensitivity")
    assert 0 <= float(value) <= 1 and chance == "0.100"
    class_page = (reported["out"] / "class_2.html").read_text()
    assert "by construction" in _cells(class_page, "sweep specificity")[0]
    assert "sweep specificity: not measured, 1 by construction" in reported["report"]
    assert "sweep specificity 1.000" not in reported["report"]


def test_collapse_banner_on_index_and_class_pages(reported):
    for name in ["index.html", "class_5.html"]:
        html = (reported["out"] / name).read_text()
        banner = html.split("<body>")[1].split("<h1>")[0].split("<nav>")[0]
        assert 'class="banner"' in banner and "decoded images are constant" in banner
        # training's warning
        assert 'class="banner warning"' in banner and "--head mlp keeps purity low" in banner
    assert "decoder collapsed" in reported["report"]


def test_pages_load_in_a_real_browser(reported):
    if chromium() is None:
        reason = (
            "Chromium is not installed (apt-get install chromium); the browser check did not run"
        )
        print(reason)
        pytest.skip(reason)
    for name in ["index.html", "class_3.html"]:
        page = reported["out"] / name
        found = inspect_page(page)
        assert found["images"] == len(check_page(page).images) and found["images"] >= 4
        assert found["broken"] == [] and found["errors"] == [] and found["console"] == [], (
            name,
            found,
        )


def test_universal_decoder_run_gets_an_index_without_class_pages(tiny_args, tmp_path):
    runner = CliRunner()
    args = [*tiny_args, *"--dataset shapes --reg universal --decoder --epochs 1 --name u".split()]
    assert runner.invoke(main, ["train", *args]).exit_code == 0
    out = tmp_path / "report"
    (out).mkdir()
    # left by an earlier report in the same folder
    (out / "class_0.html").write_text("<html></html>")
    res = runner.invoke(main, ["report", "--run", str(tmp_path / "runs" / "u"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.html")) == ["index.html"]
    index = (out / "index.html").read_text()
    assert "class_0.html" not in index and "universal HeRD" in index
    images = check_page(out / "index.html").images
    assert "figures/run0_decoder_hessian.png" in images and "figures/run0_latent_grid.png" in images
    off = re.search(r"Off-diagonal share <strong>([^<]*)</strong>", index)
    assert off and 0 <= float(off.group(1)) <= 1
    for score in ["MIG", "SAP", "DCI disentanglement"]:
        assert 0 <= float(_cells(index, score)[0]) <= 1


def test_train_lines_give_the_chance_of_the_run_s_own_blocks():
    """A pre-logits run's blocks are (512 - 2) / 10 = 51 dims, not the bottleneck's
    dims_per_class."""
    from herd_cls.cli import _purity_lines

    summary = {
        "block_purity": 0.3,
        "train_seconds": 1.0,
        "config": {"num_classes": 10, "latent_dim": 512, "shared_dims": 2, "dims_per_class": 2},
    }
    assert f"(chance {(51 / 512) ** 2:.3f})" in _purity_lines(summary)[0]
