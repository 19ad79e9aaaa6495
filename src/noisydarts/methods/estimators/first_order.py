"""First-order DARTS: ``grad_alpha L_val(w, alpha)`` at the current weights (Eq. 7 of
NoisyDARTS with ``w*`` approximated by ``w``; the approximation NoisyDARTS uses, Sec. 4.2)."""

from __future__ import annotations

import torch

from ...nn import recompute as checkpointing
from .base import Estimator, StepContext, set_grads

DEFAULTS: dict = {}


class FirstOrder(Estimator):
    def step(self, model, train_batch, val_batch, ctx: StepContext) -> torch.Tensor:
        x, y = val_batch
        params = model.arch_parameters()
        # Differentiate w.r.t. alpha only, with the weights frozen: autograd then neither runs
        # the weight-gradient kernels of every conv nor keeps the tensors only they would read.
        with checkpointing.frozen(model.weight_parameters()):
            loss = ctx.arch_loss(model, x, y)
            set_grads(params, ctx.reduce(torch.autograd.grad(loss, params, allow_unused=True), val_batch))
        return loss.detach()


def build(cfg: dict) -> FirstOrder:
    return FirstOrder()
