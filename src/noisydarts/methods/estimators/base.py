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
    #: ``(tensors, count, differentiable) -> tensors``: the mean over ranks of per-rank tensors
    #: computed on ``count`` samples (:func:`noisydarts.runtime.distributed.all_reduce_mean`); None in a
    #: single process.
    all_reduce: Callable | None = None

    def reduce(self, tensors, batch, differentiable: bool = False) -> list:
        """What a single process would have computed on the whole global ``batch``, from this
        rank's ``tensors`` (gradients, gradient-vector products) computed on its slice ``batch``:
        their mean over ranks, weighted by slice size. Every estimator calls it on every quantity
        that crosses from a loss to another evaluation point or to ``alpha.grad``, so that every
        rank continues with the same numbers. None entries stay None. Identity in a single process."""
        if self.all_reduce is None:
            return list(tensors)
        return self.all_reduce(list(tensors), len(batch[1]), differentiable=differentiable)

    def arch_loss(self, model, x, y) -> torch.Tensor:
        """The architecture objective on a val batch: ``loss_fn`` plus the supernet's
        ``arch_regularizer()`` (a term of alpha alone, e.g. the SI-VDNAS KL; None for DARTS).
        Estimators use it for ``L_val`` and ``loss_fn`` for ``L_train``: a term without the
        weights has no ``grad2_{alpha,w}``, so only the val side needs it, and the weight step
        never sees it."""
        loss = self.loss_fn(model, x, y)
        regularizer = model.arch_regularizer() if hasattr(model, "arch_regularizer") else None
        return loss if regularizer is None else loss + regularizer


class Estimator:
    def step(self, model, train_batch, val_batch, ctx: StepContext) -> torch.Tensor:
        """Set ``p.grad`` for ``model.arch_parameters()``; return the validation loss."""
        raise NotImplementedError


def set_grads(params, grads) -> None:
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.detach()


# --- helpers for estimators that evaluate a loss more than once -------------------------------

class _LossOf(nn.Module):
    """``loss_fn(model, x, y)`` as a module, so :func:`torch.func.functional_call` can run the
    loss at other weights (``model.`` + parameter name) without copying or restoring the model."""

    def __init__(self, model: nn.Module, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, x, y):
        return self.loss_fn(self.model, x, y)


def named_weights(model) -> list[tuple[str, torch.Tensor]]:
    """``(name, parameter)`` for ``model.weight_parameters()``, in that order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [(names[id(p)], p) for p in model.weight_parameters()]


def loss_at(model, loss_fn, batch, weights: dict[str, torch.Tensor] | None = None, seed: int | None = None):
    """The loss on ``batch`` with the weights named in ``weights`` replaced (functionally; the
    model's own tensors are untouched). With ``seed``, every random draw inside the forward
    (NoisyDARTS noise, dropout) comes from a generator seeded with it, so two calls with the
    same seed see the same noise sample; the global RNG stream is left as it was."""
    x, y = batch
    run = (lambda: torch.func.functional_call(_LossOf(model, loss_fn), {f"model.{n}": t for n, t in weights.items()}, (x, y))
           ) if weights else (lambda: loss_fn(model, x, y))
    if seed is None:
        return run()
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return run()


def draw_seed() -> int:
    """A seed drawn from the global generator (so a search stays reproducible from its seed)."""
    return int(torch.randint(0, 2**62, ()).item())


def zeros_for_none(grads, params) -> list[torch.Tensor]:
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
