"""Concept Whitening (Chen, Bei and Rudin, Nature Machine Intelligence 2020) on a latent vector.

z = Q^T W (x - mu): IterNorm whitening (Huang et al., CVPR 2019: W = Sigma^{-1/2} by Newton's
iterations on the trace-normalised batch covariance, running estimates at evaluation) followed by an
orthogonal rotation Q, which :meth:`ConceptWhitening.align` turns, between optimiser steps, so that
each concept's axes fire for that concept's images: gradient ascent on sum_c sum_{j in axes_c}
mean_{i in c} (x_hat_i Q)_j on the orthogonal group, by the Cayley transform with a curvilinear
search (the paper's optimiser). Here the concepts are the classes and concept c's axes are its
latent block.

Whitening is per group of dims (whole class blocks, at most :data:`GROUP_DIMS` dims, the shared dims
a group of their own), as the paper's code does with its groups: a batch of B images estimates a
covariance of rank < B, so whitening 200 dims at once from 64 images would blow up the directions
the batch does not span.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# at most this many dims whitened together (a batch of 64 estimates their covariance)
GROUP_DIMS = 32
NEWTON_STEPS = 10  # IterNorm's T (the paper's setting)
SEARCH_STEPS = 10  # halvings of the Cayley step before giving up on a rotation update
# radians one rotation update turns at most: the layers after the latent must follow the turn (the
# paper fine-tunes ImageNet models for many more updates than a small data set's few hundred steps
# give)
MAX_TURN = 0.1


def groups(num_classes: int, dims_per_class: int, shared_dims: int) -> list[tuple[int, int]]:
    """[start, end) dim ranges whitened together: consecutive whole class blocks of at most
    GROUP_DIMS dims (one block if it is wider), then the shared dims."""
    per_group = max(1, GROUP_DIMS // dims_per_class)
    out = [
        (c * dims_per_class, min(c + per_group, num_classes) * dims_per_class)
        for c in range(0, num_classes, per_group)
    ]
    end = num_classes * dims_per_class
    return out + ([(end, end + shared_dims)] if shared_dims else [])


def whitening_matrix(xc: Tensor, eps: float = 1e-5, steps: int = NEWTON_STEPS) -> Tensor:
    """IterNorm's Sigma^{-1/2} (g, g) of centred rows xc (B, g): Newton's iterations P <- (3P - P^3
    S_N) / 2 on S_N = Sigma / tr(Sigma), then P / sqrt(tr(Sigma)). Computed in the coupled form (Y
    <- Y T, P <- T P with T = (3I - P Y) / 2, Y_0 = S_N), which gives the same iterates in exact
    arithmetic and, unlike the uncoupled one, does not diverge in floating point when more steps are
    taken."""
    g = xc.shape[1]
    eye = torch.eye(g, dtype=xc.dtype, device=xc.device)
    sigma = xc.T @ xc / len(xc) + eps * eye
    trace = sigma.diagonal().sum()
    y, p = sigma / trace, eye
    for _ in range(steps):
        t = 0.5 * (3 * eye - p @ y)
        y, p = y @ t, t @ p
    return p / trace.sqrt()


def cayley_step(q: Tensor, grad: Tensor, turn: float) -> Tensor:
    """Q moved against ``grad`` (the gradient of a loss in Q) on the orthogonal group: (I + tau/2
    A)^{-1} (I - tau/2 A) Q with A = G Q^T - Q G^T skew, so the result stays orthogonal, and tau
    = turn / |A|_F, so that one step turns Q by about ``turn`` radians whatever the gradient's
    scale."""
    a = grad @ q.T - q @ grad.T
    tau = turn / float(a.norm()) if float(a.norm()) > 0 else 0.0
    eye = torch.eye(len(q), dtype=q.dtype, device=q.device)
    return torch.linalg.solve(eye + 0.5 * tau * a, (eye - 0.5 * tau * a) @ q)


class ConceptWhitening(nn.Module):
    """x (B, d) -> z (B, d): whitened per group, then rotated by Q (block-diagonal over the groups).

    Args:
        num_classes, dims_per_class, shared_dims: the latent's class blocks (concept c's axes: block
        c).
        momentum: of the running mean and whitening matrices that evaluation uses.
    """

    def __init__(
        self,
        num_classes: int,
        dims_per_class: int,
        shared_dims: int = 0,
        momentum: float = 0.05,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.dims_per_class, self.momentum, self.eps = dims_per_class, momentum, eps
        self.groups = groups(num_classes, dims_per_class, shared_dims)
        d = num_classes * dims_per_class + shared_dims
        self.register_buffer("running_mean", torch.zeros(d))
        self.register_buffer("running_whitening", torch.eye(d))
        self.register_buffer("rotation", torch.eye(d))

    def whiten(self, x: Tensor) -> Tensor:
        """x_hat (B, d) = W (x - mu), from the batch in training (updating the running estimates),
        else from the running ones; computed in float32."""
        x = x.float()
        if not self.training:
            return (x - self.running_mean) @ self.running_whitening
        mean = x.mean(0)
        xc = x - mean
        parts = []
        for start, end in self.groups:
            w = whitening_matrix(xc[:, start:end], self.eps)
            parts.append(xc[:, start:end] @ w)  # W is symmetric
            with torch.no_grad():
                running = self.running_whitening[start:end, start:end]
                running.lerp_(w.detach(), self.momentum)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
        return torch.cat(parts, 1)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):  # whitening in bfloat16 would not whiten
            return self.whiten(x) @ self.rotation

    def concept_gradient(self, x_hat: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """(G, counts): G (d, d) the sum over images of d/dQ of -(x_hat_i Q)_j on the axes j of
        image i's class (column j of G holds minus the summed x_hat of the images of the class
        owning axis j; the shared dims' columns are zero), and the images counted per axis (d,)."""
        n, d = self.dims_per_class, x_hat.shape[1]
        owner = torch.arange(d, device=x_hat.device) // n  # axis -> class (shared: >= K)
        onehot = (labels[:, None] == owner[None, :]).to(x_hat.dtype)  # (B, d)
        return -(x_hat.T @ onehot), onehot.sum(0)

    @torch.no_grad()
    def align(
        self,
        grad_sum: Tensor,
        counts: Tensor,
        x_hat: Tensor,
        labels: Tensor,
        turn: float = MAX_TURN,
    ) -> float:
        """One Cayley step of Q per group on the summed concept gradient ``grad_sum`` (d, d) over
        ``counts`` images per axis, at most ``turn`` radians, with a curvilinear search: the step
        halves until the objective on (x_hat, labels) improves (at most SEARCH_STEPS times). Returns
        the objective's gain (0 when no step improved it)."""
        grad = grad_sum / counts.clamp_min(1)
        # the objective is linear in Q: -sum(G * Q)
        batch_grad = self.concept_gradient(x_hat, labels)[0]
        objective = lambda q: -(batch_grad * q).sum()
        before = float(objective(self.rotation))
        for _ in range(SEARCH_STEPS):
            q = self.rotation.clone()
            for start, end in self.groups:
                q[start:end, start:end] = cayley_step(
                    q[start:end, start:end], grad[start:end, start:end], turn
                )
            gain = float(objective(q)) - before
            if gain > 0:
                self.rotation.copy_(q)
                return gain
            turn /= 2
        return 0.0
