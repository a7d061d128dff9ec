"""The guide's examples of adding a metric, an attack, a head and a universal HeRD form run as
written, and the entries land in their registries and reach their users (removed again
afterwards)."""

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def _examples() -> list[str]:
    section = (
        GUIDE.read_text()
        .split("## Adding a metric, an attack, a head or a HeRD form")[1]
        .split("\n## ")[0]
    )
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_guides_extension_examples_register_their_entries():
    from herd_cls.analysis.attacks import ATTACKS
    from herd_cls.analysis.evidence import Evidence
    from herd_cls.analysis.scores import METRICS
    from herd_cls.config import load_config
    from herd_cls.heads import HEADS, make_head
    from herd_cls.layout import BlockLayout
    from herd_cls.regularizers.herd import HeRD
    from herd_cls.regularizers.herd_forms import UNIVERSAL_FORMS

    import torch

    examples = _examples()
    assert len(examples) == 4
    try:
        for code in examples:
            exec(compile(code, str(GUIDE), "exec"), {})
        layout = BlockLayout(2, 2)
        z, y = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 6.0, 8.0]]), torch.tensor([0, 1])
        score = METRICS.get("latent_norm").compute(
            Evidence(None, layout, None, z, y, None, None, None)
        )
        assert score.overall == pytest.approx(7.5) and score.per_class == pytest.approx([5.0, 10.0])
        assert ATTACKS.get("fgsm-half").norm == "linf"
        assert make_head("wide-mlp", 4, 2)(z).shape == (2, 2)
        assert "wide-mlp" in HEADS.names()
        # the form's penalty is the off-diagonal share of mean |S H S|, and the config takes its
        # name
        H, scale = (
            torch.tensor([[[1.0, -2.0], [-2.0, 3.0]], [[1.0, 0.0], [0.0, 1.0]]]),
            torch.tensor([1.0, 2.0]),
        )
        herd = HeRD(BlockLayout(2, 1), mode="universal", form="offdiag-only")
        # mean |S H S| = [[1, 2], [2, 8]]
        assert herd.penalty(H, scale=scale).item() == pytest.approx(4 / 13)
        assert (
            load_config(
                overrides={"reg": "universal", "universal_form": "offdiag-only"}
            ).universal_form
            == "offdiag-only"
        )
    finally:
        (
            METRICS.unregister("latent_norm"),
            ATTACKS.unregister("fgsm-half"),
            HEADS.unregister("wide-mlp"),
        )
        UNIVERSAL_FORMS.unregister("offdiag-only")
