"""The pieces pages share: links relative to the report root, the class blocks as lists, the latent
grid's figure and rows (with and without recorded factors) and a dim's sweep figures."""

import torch

from herd_cls.analysis.decoder import LatentGrid
from herd_cls.layout import BlockLayout
from herd_cls.report.figure_views import (
    dim_sweep_figures,
    grid_figure,
    layout_view,
    relative_link,
)


def test_links_are_relative_to_the_report_root(tmp_path):
    folder = tmp_path / "report" / "figures"
    assert relative_link(folder)(folder / "curves.png") == "figures/curves.png"


def test_layout_view_lists_each_block_and_the_shared_dims():
    view = layout_view(BlockLayout.split(2, 5, 1))
    assert len(view["blocks"]) == 2 and all(len(b) == 2 for b in view["blocks"])
    assert len(view["shared"]) == 1
    assert sorted(sum(view["blocks"], []) + view["shared"]) == list(range(5))


def _grid(factors):
    return LatentGrid(
        images=torch.rand(2, 3, 2, 1, 8, 8),
        offsets=torch.tensor([-2.0, 0.0, 2.0]),
        dims=[0, 1],
        kinds=["class 0", ""],
        change=torch.tensor([0.5, 0.0]),
        source="the whole test set",
        factors=factors,
    )


def test_grid_figure_draws_the_grid_and_a_row_per_dim(tmp_path):
    view = grid_figure(_grid(None), tmp_path / "grid.png", relative_link(tmp_path))
    assert (tmp_path / "grid.png").is_file() and view["figure"] == f"{tmp_path.name}/grid.png"
    assert view["samples"] == 2 and view["source"] == "the whole test set"
    assert view["rows"] == [
        {"dim": 0, "kind": "class 0", "change": 0.5, "factor": None, "mi": None},
        {"dim": 1, "kind": "", "change": 0.0, "factor": None, "mi": None},
    ]
    named = grid_figure(_grid([("shape", 0.8), ("scale", 0.1)]), tmp_path / "g.png", str)
    assert [(r["factor"], r["mi"]) for r in named["rows"]] == [("shape", 0.8), ("scale", 0.1)]


def test_dim_sweep_figures_draw_images_only_with_a_decoder(tmp_path):
    sweep = {
        "dims": [3],
        "offsets": torch.tensor([-1.0, 0.0, 1.0]),
        "probs": torch.softmax(torch.rand(1, 3, 2, 4), -1),
        "images": None,
    }
    paths = (tmp_path / "img.png", tmp_path / "p.png")
    rel = relative_link(tmp_path)
    view = dim_sweep_figures(sweep, 0, list("abcd"), 1, "dim 3", paths, rel)
    assert view == {"dim": 3, "grid": None, "probs": rel(paths[1])} and not paths[0].exists()
    sweep["images"] = torch.rand(1, 3, 2, 1, 8, 8)
    view = dim_sweep_figures(sweep, 0, list("abcd"), 1, "dim 3", paths, rel)
    assert view["grid"] == rel(paths[0]) and paths[0].is_file()
