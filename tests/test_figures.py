import matplotlib
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from herd_cls.layout import BlockLayout
from herd_cls.report import figures


def _rectangles(fig):
    (ax, *_) = fig.axes
    return [(p.get_xy(), p.get_width(), p.get_height(), to_rgba(p.get_edgecolor()), p.get_linestyle())
            for p in ax.patches if isinstance(p, Rectangle)]


@pytest.mark.parametrize("target,own", [(1, (2, 3)), (0, (0, 1)), (2, (4, 5))])
def test_hessian_heatmap_outlines_the_own_block_in_red_and_dashes_the_shared_dims(target, own):
    # K = 3 classes, 2 dims each, 2 shared dims at the end: class 1 owns dims 2..3, the shared dims are 6..7
    blocks = BlockLayout.split(3, 8, shared_dims=2)
    fig = figures._hessian_figure(torch.rand(8, 8), blocks, target, "mean |H|")
    rects = _rectangles(fig)
    red = [r for r in rects if r[3] == to_rgba("red")]
    lo = own[0] - 0.5   # a pixel spans [i - 0.5, i + 0.5] in data coordinates
    assert [(r[0], r[1], r[2]) for r in red] == [((lo, lo), 2, 2)]
    shared = [r for r in rects if r[4] == "--"]
    assert [(r[0], r[1], r[2]) for r in shared] == [((5.5, 5.5), 2, 2)]
    others = [r for r in rects if r not in red and r not in shared]
    assert len(others) == 2 and all(r[3] != to_rgba("red") and r[4] in ("-", "solid") for r in others)
    matplotlib.pyplot.close(fig)


def test_hessian_heatmap_without_shared_dims_draws_no_shared_marker(tmp_path):
    blocks = BlockLayout.split(2, 4)
    fig = figures._hessian_figure(torch.rand(4, 4), blocks, 0, "t")
    assert not [r for r in _rectangles(fig) if r[4] == "--"]
    matplotlib.pyplot.close(fig)
    path = figures.hessian_heatmap(torch.rand(4, 4), blocks, 1, "t", tmp_path / "h.png")
    assert path == tmp_path / "h.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
