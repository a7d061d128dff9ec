"""The head registry: every --head builds a module of the right shape, the capsule head's golden
values, and the metadata the metrics and warnings read."""

import pytest
import torch

from herd_cls.heads import HEADS, make_head
from herd_cls.layout import BlockLayout
from herd_cls.registry import HerdError


@pytest.mark.parametrize("kind", HEADS.names())
def test_every_head_maps_latents_to_logits(kind):
    torch.manual_seed(0)
    head = make_head(kind, 8, 3, hidden=5, layout=BlockLayout(3, 2, shared_dims=2))
    assert head(torch.randn(4, 8)).shape == (4, 3)


def test_capsule_head_logit_is_the_length_of_its_block():
    head = make_head("capsule", 7, 3, layout=BlockLayout(3, 2, shared_dims=1))
    z = torch.tensor([[3.0, 4.0, 0.0, 1.0, 6.0, 8.0, 100.0]])  # the shared dim is not read
    torch.testing.assert_close(head(z), torch.tensor([[5.0, 1.0, 10.0]]), rtol=1e-5, atol=1e-5)
    assert float(head.logit(z, 2)) == pytest.approx(10.0, rel=1e-5)
    assert list(head.parameters()) == []


@pytest.mark.parametrize(
    "kind,reads_only_own", [("block", True), ("capsule", True), ("mlp", False), ("linear", False)]
)
def test_own_block_heads_are_the_ones_whose_logits_read_only_their_blocks(kind, reads_only_own):
    """The metadata the by-construction metrics read, checked on the Jacobian: logit k's derivative
    outside class k's block (and the shared dims) is zero exactly when the kind says so."""
    torch.manual_seed(1)
    layout = BlockLayout(3, 2, shared_dims=0)
    head = make_head(kind, 6, 3, hidden=5, layout=layout)
    J = torch.autograd.functional.jacobian(lambda v: head(v[None])[0], torch.randn(6))  # (K, d)
    assert HEADS.get(kind).own_blocks == reads_only_own
    assert bool((J[~layout.masks] == 0).all()) == reads_only_own


def test_unknown_head_lists_the_valid_ones():
    with pytest.raises(
        HerdError, match="unknown head 'deep'; choose one of: block, capsule, linear, mlp"
    ):
        make_head("deep", 6, 3)
