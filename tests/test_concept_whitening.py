"""Concept Whitening: IterNorm against the eigendecomposition's inverse square root, whitened
batches, rotations that stay orthogonal and turn each class's axes towards its images, and the --reg
concept-whitening run."""

import pytest
import torch

from herd_cls.concept_whitening import ConceptWhitening, cayley_step, groups, whitening_matrix
from herd_cls.registry import HerdError


def test_groups_are_whole_class_blocks_of_at_most_32_dims_then_the_shared_dims():
    assert groups(10, 2, 0) == [(0, 20)]
    assert groups(100, 2, 3) == [(32 * i, min(32 * (i + 1), 200)) for i in range(7)] + [(200, 203)]
    assert groups(3, 40, 0) == [
        (0, 40),
        (40, 80),
        (80, 120),
    ]  # a block wider than 32 is its own group


def test_iternorm_whitening_matrix_is_the_inverse_square_root_of_the_covariance():
    torch.manual_seed(0)
    x = torch.randn(4000, 5, dtype=torch.float64) @ torch.randn(5, 5, dtype=torch.float64)
    xc = x - x.mean(0)
    sigma = xc.T @ xc / len(xc)
    values, vectors = torch.linalg.eigh(sigma)
    oracle = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    torch.testing.assert_close(
        whitening_matrix(xc, eps=0.0, steps=40), oracle, rtol=1e-4, atol=1e-6
    )


def test_a_training_batch_comes_out_white_in_each_group():
    """(IterNorm's 10 steps whiten a moderately conditioned covariance; an ill-conditioned one only
    in part.)"""
    torch.manual_seed(1)
    layer = ConceptWhitening(
        num_classes=20, dims_per_class=2, shared_dims=1
    ).train()  # groups of 32, 8 and 1
    # correlated dims
    mixing = torch.diag(torch.linspace(0.5, 2.0, 41)) + 0.3 * torch.randn(41, 41) / 41**0.5
    x = torch.randn(2000, 41) @ mixing + 3.0
    z = layer(x)
    for start, end in layer.groups:
        cov = torch.cov(z[:, start:end].T, correction=0).reshape(end - start, end - start)
        torch.testing.assert_close(cov, torch.eye(end - start), atol=2e-2, rtol=0)
    assert float(z.mean(0).abs().max()) < 1e-4


def test_cayley_steps_stay_orthogonal_and_lower_a_linear_loss():
    torch.manual_seed(2)
    q = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))[0]
    grad = torch.randn(6, 6, dtype=torch.float64)  # loss(Q) = sum(grad * Q), linear in Q
    moved = cayley_step(q, grad, 0.05)
    torch.testing.assert_close(moved @ moved.T, torch.eye(6, dtype=torch.float64))
    assert float((grad * moved).sum()) < float((grad * q).sum())


def test_alignment_turns_each_class_block_towards_its_images():
    """Two classes whose whitened activations point along the other class's axis (class 1
    negatively, so that a rotation, not a reflection, aligns them): after alignment each class's own
    axis carries its activation, and the rotation is still orthogonal."""
    torch.manual_seed(3)
    layer = ConceptWhitening(num_classes=2, dims_per_class=1)
    labels = torch.arange(200) % 2
    x_hat = torch.randn(200, 2) * 0.1
    x_hat[labels == 0, 1] += 1.0  # class 0 fires on axis 1, class 1 on minus axis 0
    x_hat[labels == 1, 0] -= 1.0
    before = (x_hat @ layer.rotation)[labels == 0, 0].mean()
    for _ in range(40):
        grad, counts = layer.concept_gradient(x_hat, labels)
        layer.align(grad, counts, x_hat, labels)
    z = x_hat @ layer.rotation
    assert before < 0.1 and z[labels == 0, 0].mean() > 0.9 and z[labels == 1, 1].mean() > 0.9
    torch.testing.assert_close(layer.rotation @ layer.rotation.T, torch.eye(2), atol=1e-5, rtol=0)


def test_concept_whitening_run_turns_its_rotation_and_refuses_a_weight(tmp_path):
    from herd_cls.config import load_config
    from herd_cls.train import train

    with pytest.raises(HerdError, match="no loss term to weigh; drop --alpha-reg"):
        load_config(overrides={"reg": "concept-whitening", "alpha_reg": 1.0})
    cfg = load_config(
        overrides={
            "reg": "concept-whitening",
            "backbone": "conv",
            "epochs": 2,
            "warmup": 0,
            "num_samples": 320,
            "out_dir": str(tmp_path),
            "name": "cw",
        }
    )
    run_dir = train(cfg, progress=False)
    from herd_cls import load_run

    layer = load_run(run_dir).model.whitening
    q = layer.rotation
    assert float((q - torch.eye(len(q))).abs().max()) > 1e-3  # 10 steps of 32 images: two updates
    torch.testing.assert_close(q @ q.T, torch.eye(len(q)), atol=1e-5, rtol=0)
    assert not torch.equal(layer.running_whitening, torch.eye(len(q)))
