"""HeRD's forms: the class variants' free regions and probe support, and the universal penalty (one
form: balanced); a form registered from outside is in tests/test_guide.py (the guide's example)."""

import pytest
import torch

from herd_cls.layout import BlockLayout
from herd_cls.regularizers.herd import HeRD
from herd_cls.regularizers.herd_forms import (
    CLASS_VARIANTS,
    probe_variants,
    universal_penalty,
)
from herd_cls.regularizers.herd_penalty import universal_terms


def _psd(b=6, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(b, d, d, generator=g)
    return a @ a.transpose(1, 2)


def _balanced_by_hand(H, scale, alpha_off):
    """alpha_off x the off-diagonal share of mean |S H S| + (||diag||_2 / ||diag||_1 - d^-1/2) / (1
    - d^-1/2)."""
    hbar = (H * scale.view(1, -1, 1) * scale.view(1, 1, -1)).abs().mean(0)
    diag, root = torch.diagonal(hbar), hbar.shape[0] ** 0.5
    return alpha_off * (hbar.sum() - diag.sum()) / hbar.sum() + (
        diag.norm() / diag.sum() - 1 / root
    ) / (1 - 1 / root)


def test_the_universal_penalty_by_hand():
    H, scale = _psd(), torch.tensor([1.0, 2.0, 0.5, 1.5])
    assert universal_penalty(H, 0.7, scale=scale).item() == pytest.approx(
        _balanced_by_hand(H, scale, 0.7).item(), rel=1e-6
    )


def test_terms_at_their_extremes():
    one_dim = torch.zeros(3, 4, 4)
    one_dim[:, 0, 0] = 2.0
    t = universal_terms(one_dim)
    assert t["offdiag_share"].item() == 0 and t["image_offdiag_share"].item() == 0
    assert t["diag_imbalance"].item() == pytest.approx(1.0)
    uniform = torch.eye(4).expand(3, 4, 4) * 5.0
    assert universal_terms(uniform)["diag_imbalance"].item() == pytest.approx(0.0, abs=1e-6)
    rank_one = torch.ones(2, 4, 4)  # perfectly correlated dims
    assert universal_terms(rank_one)["correlation"].item() == pytest.approx(1.0)


def test_a_rescaled_latent_dim_changes_nothing():
    """Rescaling z_j by c (the decoder compensating) multiplies H's row and column j by 1/c and the
    dim's
    std by c: the penalty must not change (else it could be lowered without changing the decoder's
        function)."""
    H, scale = _psd(), torch.tensor([1.0, 2.0, 0.5, 1.5])
    c = torch.tensor([1.0, 30.0, 1.0, 0.1])
    H2 = H / c.view(1, -1, 1) / c.view(1, 1, -1)
    assert universal_penalty(H2, 1.0, scale=scale * c).item() == pytest.approx(
        universal_penalty(H, 1.0, scale=scale).item(), rel=1e-4
    )
    # raw units
    assert universal_penalty(H2, 1.0).item() != pytest.approx(
        universal_penalty(H, 1.0).item(), rel=1e-2
    )


def test_one_live_dim_is_no_minimum():
    one_dim = torch.zeros(3, 4, 4)
    one_dim[:, 0, 0] = 2.0
    diagonal = torch.eye(4).expand(3, 4, 4).clone()
    assert universal_penalty(one_dim, 1.0).item() == pytest.approx(1.0)
    assert universal_penalty(diagonal, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_universal_herd_trains_a_decoder_head():
    torch.manual_seed(3)
    head = torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12), torch.nn.Sigmoid()
    )
    z, x = torch.randn(16, 4, requires_grad=True), torch.rand(16, 12)
    p = HeRD(BlockLayout(2, 2), mode="universal")(head, z, x, loss="bce")
    assert torch.isfinite(p) and p.item() >= 0
    p.backward()
    assert all(torch.isfinite(q.grad).all() for q in head.parameters())


def test_a_saved_config_with_a_retired_form_is_one_clear_error(tmp_path):
    from herd_cls.config import load_config
    from herd_cls.registry import HerdError

    (tmp_path / "ok.yaml").write_text("reg: universal\nuniversal_form: balanced\n")
    assert load_config(tmp_path / "ok.yaml").reg == "universal"  # the form that is now built in
    (tmp_path / "old.yaml").write_text("reg: universal\nuniversal_form: share\n")
    with pytest.raises(
        HerdError, match="sets universal_form, which is retired: .* delete the line"
    ):
        load_config(tmp_path / "old.yaml")


def test_each_class_variant_frees_its_region():
    """K = 2 blocks of 2 dims and 1 shared dim (d = 5): the free entries of class 0, counted by
    hand."""
    layout = BlockLayout(2, 2, shared_dims=1)
    count = {
        name: int(CLASS_VARIANTS.get(name).free(layout)[0].sum())
        for name in CLASS_VARIANTS.names(sort=False)
    }
    assert count == {
        "reference": 3,
        "block": 5,
        "purity": 4,
        "log-purity": 4,
        "image-purity": 4,
        "dual-purity": 4,
    }
    assert CLASS_VARIANTS.get("reference").free(layout)[0].diagonal().tolist() == [
        True,
        True,
        False,
        False,
        True,
    ]


def test_probes_serve_only_the_variants_that_are_functions_of_block_masses():
    assert probe_variants() == ["purity", "log-purity", "image-purity", "dual-purity"]
    assert all(CLASS_VARIANTS.get(name).from_masses is None for name in ("reference", "block"))


def test_an_unknown_form_lists_the_registered_ones():
    from herd_cls.registry import HerdError

    with pytest.raises(
        HerdError, match="unknown universal HeRD form 'share'; choose one of: balanced"
    ):
        HeRD(BlockLayout(2, 2), mode="universal", form="share")
    with pytest.raises(
        HerdError, match="unknown HeRD variant 'nope'; choose one of: block, dual-purity"
    ):
        HeRD(BlockLayout(2, 2), variant="nope")
