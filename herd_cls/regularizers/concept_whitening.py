"""``--reg concept-whitening``: the Concept Whitening baseline (Chen, Bei and Rudin 2020), classes
as concepts.

The model gets a :class:`herd_cls.concept_whitening.ConceptWhitening` layer on its latent
(``whitened``); this regularizer adds no loss term. After every optimiser step it sums the concept
gradient of the batch and, every :data:`ALIGN_EVERY` steps once the warm-up is over, turns the
layer's rotation so that each class's block fires for its images (the paper alternates the same way
between the task loss and the rotation).
"""

from __future__ import annotations

import torch

from ..concept_whitening import ConceptWhitening
from ..registry import HerdError
from .base import REGULARIZERS, Batch, Regularizer

# optimiser steps between rotation updates: the paper's code turns every 20 batches of ImageNet; a
# small data set has a few hundred steps in all, so it turns every 5 by at most MAX_TURN radians
ALIGN_EVERY = 5


@REGULARIZERS.add
class ConceptWhiteningAlignment(Regularizer):
    name = "concept-whitening"
    help = (
        "Concept Whitening (Chen et al. 2020): the latent whitened, then rotated so that each "
        "class's block fires for its images; no loss term (a baseline)"
    )
    family = "concept alignment"
    whitened = True

    def __init__(self, cfg, model, dataset_size: int, reduce=None):
        super().__init__(cfg, model, dataset_size, reduce)
        self.layer: ConceptWhitening = model.whitening
        self.reduce, self.active, self.steps = reduce, False, 0
        self.grad_sum = self.counts = None

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.alpha_reg:
            raise HerdError("--reg concept-whitening has no loss term to weigh; drop --alpha-reg")

    def schedule(self, epoch: int) -> float:
        return 0.0  # no loss term: the trainer never asks for one

    def start_epoch(self, epoch: int) -> None:
        self.active = super().schedule(epoch) > 0

    def loss(self, model, batch):
        raise RuntimeError("--reg concept-whitening has no loss; the trainer never asks for it")

    @torch.no_grad()
    def after_step(self, batch: Batch) -> None:
        if not self.active:
            return
        x_hat = batch.z.detach().float() @ self.layer.rotation.T  # the rotation is orthogonal
        grad, counts = self.layer.concept_gradient(x_hat, batch.y)
        if self.reduce is not None:
            grad, counts = self.reduce(grad), self.reduce(counts)
        self.grad_sum = grad if self.grad_sum is None else self.grad_sum + grad
        self.counts = counts if self.counts is None else self.counts + counts
        self.steps += 1
        if self.steps % ALIGN_EVERY == 0:
            self.layer.align(self.grad_sum, self.counts, x_hat, batch.y)
            self.grad_sum = self.counts = None

    def state_dict(self) -> dict:
        return {"steps": self.steps, "grad_sum": self.grad_sum, "counts": self.counts}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state.get("steps", 0)
        self.grad_sum, self.counts = state.get("grad_sum"), state.get("counts")
