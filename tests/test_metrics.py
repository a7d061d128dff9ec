import math

import torch

from herd_cls.metrics import class_block_purity
from herd_cls.regularizer import class_blocks


def test_block_purity_golden_values():
    blocks = class_blocks(2, 5, shared_dims=1)          # B_0 = {0, 1}, B_1 = {2, 3}, shared {4}
    hbar = torch.zeros(2, 5, 5)
    hbar[0, 0, 1] = hbar[0, 1, 0] = 3.0                 # inside B_0 x B_0
    hbar[0, 0, 4] = -2.0                                 # outside; |.| counts
    hbar[1, 4, 4] = 1.0                                  # class 1: shared dim only -> purity 0
    assert class_block_purity(hbar, blocks).tolist() == [6 / 8, 0.0]


def test_block_purity_of_absent_class_is_nan_and_uniform_mass_is_chance():
    blocks = class_blocks(4, 12, shared_dims=0)
    hbar = torch.ones(4, 12, 12)
    hbar[2] = 0
    purity = class_block_purity(hbar, blocks)
    assert math.isnan(purity[2]) and torch.allclose(purity[[0, 1, 3]], torch.tensor((3 / 12) ** 2))
