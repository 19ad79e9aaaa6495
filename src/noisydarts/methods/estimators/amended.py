"""Amended-DARTS (Bi et al., 2019): first-order gradient plus the amending term of Eq. 7.

Eq. 6 splits the exact hypergradient at the optimum ``w*`` into ``g = g1 + g2`` with
``g1 = grad_alpha L_val(w, alpha)`` and ``g2 = -grad2_{alpha,w} L_train . H^-1 . grad_w L_val``,
``H = grad2_w L_train``. Eq. 7 replaces the intractable ``H^-1`` by ``H`` and scales by the
amending coefficient ``eta`` (0.1 in the paper)::

    g = grad_alpha L_val(w, alpha) - eta * grad2_{alpha,w} L_train(w, alpha) . H . grad_w L_val(w, alpha)

at the current weights ``w`` (the paper's ``w_est``, Sec. 3.4). Here ``grad2_{alpha,w}`` is the
``|alpha| x |w|`` matrix ``grad_alpha(grad_w .)``. Both products are exact autograd
Hessian-vector products; ``H`` is never formed:

1. one backward of ``L_val`` gives ``g1`` and ``v = grad_w L_val``;
2. ``u = grad_w L_train`` with ``create_graph``; ``H v = grad_w <u, v>`` (double backward);
3. ``grad2_{alpha,w} L_train . (H v) = grad_alpha <u, stop_grad(H v)>`` (double backward).

Noise samples: ``L_train`` is evaluated once (steps 2 and 3 differentiate the same graph), so
both products use the same noise sample by construction; ``L_val`` is one other forward with
its own sample. BatchNorm: each forward normalizes with its batch's statistics and updates the
running estimates once, as in any training forward.

Note on the paper's Eq. 8 (the claim ``<g2', g2> >= 0``): the argument takes the quadratic form
of ``H A H^-1`` (``A`` PSD) to be non-negative because the matrix is similar to ``A``; that holds
for its eigenvalues, not for its quadratic form unless ``H`` commutes with ``A`` (e.g. a
multiple of the identity). The tests check the property where it holds (a well-conditioned
``H``) and show a PD ``H`` where it does not.
"""

from __future__ import annotations

import torch

from ...nn import recompute as checkpointing, compiling
from ...errors import UserError
from .base import Estimator, StepContext, set_grads, zeros_for_none

DEFAULTS: dict = {
    "eta": 0.1,       # the amending coefficient of Eq. 7 of Amended-DARTS
}


class Amended(Estimator):
    def __init__(self, eta: float = 0.1):
        self.eta = eta

    def step(self, model, train_batch, val_batch, ctx: StepContext) -> torch.Tensor:
        alphas, weights = model.arch_parameters(), model.weight_parameters()
        x, y = val_batch
        if self.eta == 0:  # exactly first order, at first-order cost (and memory)
            with checkpointing.frozen(weights):
                loss_val = ctx.arch_loss(model, x, y)
                set_grads(alphas, ctx.reduce(torch.autograd.grad(loss_val, alphas, allow_unused=True), val_batch))
            return loss_val.detach()
        with compiling.eager():  # H v and the mixed derivative differentiate twice
            return self._amended_step(model, alphas, weights, train_batch, val_batch, ctx)

    def _amended_step(self, model, alphas, weights, train_batch, val_batch, ctx: StepContext) -> torch.Tensor:
        x, y = val_batch
        loss_val = ctx.arch_loss(model, x, y)
        grads = torch.autograd.grad(loss_val, alphas + weights, allow_unused=True)
        # Over ranks: g1 and v are means over the global val batch; H and the mixed derivative
        # are means over the global train batch, so H v is reduced before it is used again.
        g1 = zeros_for_none(ctx.reduce(grads[: len(alphas)], val_batch), alphas)
        v = zeros_for_none(ctx.reduce(grads[len(alphas):], val_batch), weights)

        x, y = train_batch
        loss_train = ctx.loss_fn(model, x, y)
        grad_w = torch.autograd.grad(loss_train, weights, allow_unused=True, create_graph=True)
        used = [k for k, g in enumerate(grad_w) if g is not None and g.requires_grad]
        if not used:  # L_train's weight gradient does not depend on w or alpha: no amending term
            set_grads(alphas, g1)
            return loss_val.detach()
        grad_w = [grad_w[k] for k in used]
        hv = torch.autograd.grad(grad_w, [weights[k] for k in used], grad_outputs=[v[k] for k in used],
                                 allow_unused=True, retain_graph=True)
        hv = ctx.reduce([h.detach() for h in zeros_for_none(hv, [weights[k] for k in used])], train_batch)
        mixed = torch.autograd.grad(grad_w, alphas, grad_outputs=hv, allow_unused=True)
        mixed = zeros_for_none(ctx.reduce(mixed, train_batch), alphas)
        set_grads(alphas, [a - self.eta * b for a, b in zip(g1, mixed)])
        return loss_val.detach()


def build(cfg: dict) -> Amended:
    return Amended(eta=cfg["estimator"]["eta"])


def validate(cfg: dict) -> None:
    eta = cfg["estimator"]["eta"]
    if eta < 0:
        raise UserError(f"estimator.eta (the amending coefficient) must be >= 0, got {eta} (the paper uses 0.1)")
