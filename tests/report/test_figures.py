import matplotlib
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from herd_cls.layout import BlockLayout
from herd_cls.report import figures, sweep_figures


def _rectangles(fig):
    (ax, *_) = fig.axes
    return [
        (p.get_xy(), p.get_width(), p.get_height(), to_rgba(p.get_edgecolor()), p.get_linestyle())
        for p in ax.patches
        if isinstance(p, Rectangle)
    ]


@pytest.mark.parametrize("target,own", [(1, (2, 3)), (0, (0, 1)), (2, (4, 5))])
def test_hessian_heatmap_outlines_the_own_block_in_red_and_dashes_the_shared_dims(target, own):
    # K = 3 classes, 2 dims each, 2 shared dims at the end: class 1 owns dims 2..3, the shared dims
    # are 6..7
    blocks = BlockLayout.split(3, 8, shared_dims=2)
    fig = figures._hessian_figure(torch.rand(8, 8), blocks, target, "mean |H|")
    rects = _rectangles(fig)
    red = [r for r in rects if r[3] == to_rgba("red")]
    lo = own[0] - 0.5  # a pixel spans [i - 0.5, i + 0.5] in data coordinates
    assert [(r[0], r[1], r[2]) for r in red] == [((lo, lo), 2, 2)]
    shared = [r for r in rects if r[4] == "--"]
    assert [(r[0], r[1], r[2]) for r in shared] == [((5.5, 5.5), 2, 2)]
    others = [r for r in rects if r not in red and r not in shared]
    assert len(others) == 2 and all(
        r[3] != to_rgba("red") and r[4] in ("-", "solid") for r in others
    )
    matplotlib.pyplot.close(fig)


def test_hessian_heatmap_without_shared_dims_draws_no_shared_marker(tmp_path):
    blocks = BlockLayout.split(2, 4)
    fig = figures._hessian_figure(torch.rand(4, 4), blocks, 0, "t")
    assert not [r for r in _rectangles(fig) if r[4] == "--"]
    matplotlib.pyplot.close(fig)
    path = figures.hessian_heatmap(torch.rand(4, 4), blocks, 1, "t", tmp_path / "h.png")
    assert path == tmp_path / "h.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_plot_at_many_classes_draws_the_target_the_top_movers_and_the_rest_summed():
    """100 classes: the target (bold), the 5 classes whose probability moves most (classes 2 and 3
    among them) and one dashed line of the other 94 summed, which with the drawn ones adds up to 1
    at every offset."""
    steps, k = 5, 100
    probs = torch.full((steps, 2, k), 1.0 / k)
    ramp = torch.linspace(0, 0.3, steps)[:, None]
    probs[:, :, 7] += ramp  # the target gains what class 1 loses
    probs[:, :, 1] -= ramp.clamp(max=1.0 / k)
    probs[:, :, 2] += 0.3 - ramp  # keeps the sum at 1 with class 3 losing the same
    probs[:, :, 3] -= 0.3 - ramp
    probs = probs.clamp_min(0) / probs.clamp_min(0).sum(-1, keepdim=True)
    fig = sweep_figures._sweep_probability_figure(
        probs, torch.linspace(-2, 2, steps), [str(c) for c in range(k)], 7, "t"
    )
    lines = fig.axes[0].get_lines()
    assert len(lines) == 1 + sweep_figures.SWEEP_MOVERS + 1
    bold = [line for line in lines if line.get_linewidth() == 2.5]
    assert len(bold) == 1 and bold[0].get_label() == "7"
    (rest,) = [line for line in lines if line.get_linestyle() == "--"]
    assert rest.get_label() == "the other 94 classes, summed"
    mean = probs.mean(1)
    for moved in (2, 3):
        assert any(
            torch.allclose(torch.as_tensor(line.get_ydata()).float(), mean[:, moved])
            for line in lines
        )
    total = sum(line.get_ydata() for line in lines)
    assert total == pytest.approx([1.0] * steps, abs=1e-5)
    matplotlib.pyplot.close(fig)


def test_sweep_plot_up_to_ten_classes_draws_every_class():
    probs = torch.softmax(torch.randn(4, 3, 10), -1)
    fig = sweep_figures._sweep_probability_figure(
        probs, torch.linspace(-1, 1, 4), [str(c) for c in range(10)], 0, "t"
    )
    assert len(fig.axes[0].get_lines()) == 10
    matplotlib.pyplot.close(fig)
