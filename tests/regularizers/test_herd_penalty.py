import math

import pytest
import torch

from herd_cls.registry import HerdError
from herd_cls.layout import BlockLayout
from herd_cls.regularizers.base import penalty_ramp
from herd_cls.regularizers.herd import HeRD
from herd_cls.regularizers.herd_forms import CLASS_VARIANTS, class_mask, universal_penalty
from herd_cls.regularizers.herd_penalty import class_penalty
from toy_heads import float64, mlp, oracle  # noqa: F401  (float64: an autouse fixture)


def test_reference_mask_hand_worked():
    # K=2, d=5, n=2, one shared dim (the reference's own tiny setting)
    m = class_mask(
        BlockLayout(2, 2, shared_dims=1), alpha_off=0.5, alpha_diag=1.0, variant="reference"
    )
    off, dg = 0.5 / 20, 1.0 / 5
    assert m.shape == (2, 5, 5)
    assert torch.diagonal(m[0]).tolist() == pytest.approx([0, 0, dg, dg, 0])
    assert torch.diagonal(m[1]).tolist() == pytest.approx([dg, dg, 0, 0, 0])
    assert m[0, 0, 1] == pytest.approx(off) and m[1, 4, 2] == pytest.approx(off)


def test_block_variant_frees_whole_own_block():
    m = class_mask(BlockLayout(2, 2, shared_dims=1), variant="block")
    assert m[0, :2, :2].abs().sum() == 0 and m[0, 4, 4] == 0
    assert m[0, 2, 3] > 0 and m[0, 0, 4] > 0 and m[1, 0, 1] > 0
    free = CLASS_VARIANTS.get("block").free(BlockLayout.split(2, 5, 1))
    assert free[1].sum() == 4 + 1


def test_class_penalty_golden_values():
    d = 5
    labels = torch.tensor([0, 0, 1])
    H = torch.zeros(3, d, d)
    H[0, 0, 0], H[1, 0, 0] = 2.0, 4.0  # class 0: all mass on its own diagonal -> 0
    H[2, 0, 1] = H[2, 1, 0] = -1.0  # class 1: off-diagonal mass only
    mask = class_mask(BlockLayout.split(2, d, 1), variant="reference")
    # class 1: sum(M*H) = 2 * 0.5/20 ; mean(|H|) = 2/25
    assert class_penalty(H, labels, mask).item() == pytest.approx(2 * 0.025 / (2 / 25))
    purity = class_mask(BlockLayout.split(2, d, 1), variant="purity")
    # class 0 is pure; class 1 has all its mass outside B_1 -> (0 + 1) / K
    assert class_penalty(H, labels, purity).item() == pytest.approx(0.5)


def test_universal_penalty_golden_value():
    H = torch.tensor([[[3.0, 1.0], [1.0, 0.0]]])
    # alpha_off * 2/5 + the imbalance of the diagonal (3, 0): all of it on one dim, so 1
    assert universal_penalty(H, 0.5).item() == pytest.approx(0.5 * 2 / 5 + 1.0)


@pytest.mark.parametrize(
    "variant", ["reference", "block", "purity", "log-purity", "image-purity", "dual-purity"]
)
def test_gradient_step_lowers_penalty(variant):
    torch.manual_seed(7)
    herd = HeRD(BlockLayout.split(3, 7, 1), variant=variant)
    head = mlp(7, 3)
    z, y = torch.randn(32, 7), torch.arange(32) % 3
    opt = torch.optim.SGD(head.parameters(), lr=0.05)
    before = herd(head, z, y, labels=y).item()
    for _ in range(20):
        opt.zero_grad()
        herd(head, z, y, labels=y).backward()
        opt.step()
    assert herd(head, z, y, labels=y).item() < before


def test_probe_penalty_tracks_exact_purity():
    torch.manual_seed(8)
    head, z, y = mlp(6, 3), torch.randn(30, 6), torch.arange(30) % 3
    H = oracle(head, z, y, "ce")
    blocks = BlockLayout.split(3, 6).masks
    want = torch.stack(
        [
            1 - H[y == c][:, blocks[c]][:, :, blocks[c]].pow(2).sum() / H[y == c].pow(2).sum()
            for c in range(3)
        ]
    ).mean()
    herd = HeRD(BlockLayout.split(3, 6), variant="purity", probes=2000)
    assert herd(head, z, y, labels=y).item() == pytest.approx(want.item(), abs=0.03)
    torch.manual_seed(8)
    log_herd = HeRD(BlockLayout.split(3, 6), variant="log-purity", probes=2000)
    impurity = 1 - torch.stack(
        [
            H[y == c][:, blocks[c]][:, :, blocks[c]].pow(2).sum() / H[y == c].pow(2).sum()
            for c in range(3)
        ]
    )
    want_log = -torch.log((1 - impurity + 0.01) / 1.01).mean()
    assert log_herd(head, z, y, labels=y).item() == pytest.approx(want_log.item(), rel=0.1)


def test_herd_module_api():
    herd = HeRD(BlockLayout.split(10, 22, 2))
    assert herd.mask.shape == (10, 22, 22) and herd.layout.block(3).tolist() == [6, 7]
    with pytest.raises(HerdError, match="variant"):
        HeRD(BlockLayout.split(10, 22, 2), variant="nope")
    with pytest.raises(HerdError, match="probes"):
        HeRD(BlockLayout.split(10, 22, 2), probes=2, variant="reference")
    with pytest.raises(HerdError, match="probes"):
        HeRD(BlockLayout.split(10, 22, 2), method="forward", mode="universal")
    with pytest.raises(
        HerdError, match="unknown curvature method 'jvp'; choose one of: auto, closed_form, exact"
    ):
        HeRD(BlockLayout.split(10, 22, 2), method="jvp")


def test_penalty_ramp_warmup_and_ramp():
    assert [penalty_ramp(e, warmup=2, ramp=0) for e in range(4)] == [0, 0, 1, 1]
    assert [penalty_ramp(e, warmup=1, ramp=2) for e in range(4)] == [0, 0.5, 1, 1]


def test_purity_penalty_is_one_minus_block_purity():
    from herd_cls.purity import class_abs_sum, class_block_purity

    torch.manual_seed(9)
    H, y = torch.randn(12, 7, 7), torch.arange(12) % 3
    mask = class_mask(BlockLayout.split(3, 7, 1), variant="purity")
    hbar, _ = class_abs_sum(H, y, 3)
    purity = class_block_purity(hbar, BlockLayout.split(3, 7, 1))
    assert class_penalty(H, y, mask).item() == pytest.approx((1 - purity).mean().item())


def test_log_purity_penalty_golden_values():
    # class 0: all mass in its block (purity 1); class 1: a quarter inside (purity 0.25)
    H = torch.zeros(2, 4, 4)
    H[0, 0, 0] = 2.0
    H[1, 2, 2], H[1, 0, 0], H[1, 0, 1] = 1.0, 2.0, 1.0
    y = torch.tensor([0, 1])
    mask = class_mask(BlockLayout.split(2, 4), variant="log-purity")
    want = -(math.log(1.01 / 1.01) + math.log(0.26 / 1.01)) / 2
    assert class_penalty(H, y, mask, log_purity=True).item() == pytest.approx(want)
    assert HeRD(BlockLayout.split(2, 4), variant="log-purity").penalty(
        H, y
    ).item() == pytest.approx(want)
    # a collapsed class (purity 0) costs log(101) ~ 4.6, where plain purity charges it at most 1
    H[1, 2, 2] = 0.0
    assert class_penalty(H, y, mask, log_purity=True).item() == pytest.approx(math.log(101) / 2)
    assert class_penalty(
        H, y, class_mask(BlockLayout.split(2, 4), variant="purity")
    ).item() == pytest.approx(0.5)
