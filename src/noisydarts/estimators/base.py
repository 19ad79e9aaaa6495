"""The estimator interface shared by first order, second order and Amended-DARTS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn


@dataclass
class StepContext:
    """What an estimator may need besides the batches."""

    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]  # (model, x, y) -> scalar loss
    weight_optimizer: torch.optim.Optimizer
    weight_lr: float


class Estimator:
    def step(self, model, train_batch, val_batch, ctx: StepContext) -> torch.Tensor:
        """Set ``p.grad`` for ``model.arch_parameters()``; return the validation loss."""
        raise NotImplementedError


def set_grads(params, grads) -> None:
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.detach()
