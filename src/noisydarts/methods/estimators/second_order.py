"""Second-order DARTS (Liu et al., 2019, Eq. 6-8): the gradient after one unrolled weight step.

Virtual step, as the DARTS release does it (SGD with the weight optimizer's momentum buffer and
weight decay, no gradient clipping)::

    w' = w - xi * (grad_w L_train(w, alpha) + mu * m + wd * w)

Gradient (Eq. 7 of DARTS)::

    g = grad_alpha L_val(w', alpha) - xi * grad2_{alpha,w} L_train(w, alpha) . grad_w' L_val(w', alpha)

The mixed second derivative times ``v = grad_w' L_val(w', alpha)`` is, by default, the central
finite difference of DARTS (Eq. 8): ``(grad_alpha L_train(w+, a) - grad_alpha L_train(w-, a)) / 2r``
with ``w± = w ± r v`` and ``r = estimator.r / ||v||`` (0.01 in DARTS). With ``exact: true``
autograd differentiates through the virtual step instead (double backward), giving the same
expression without truncation error. ``xi: null`` uses the current weight learning rate.

All evaluations at other weights go through :func:`torch.func.functional_call`: the model is
never copied and its parameters are never modified, so there is nothing to restore.

Noise samples (NoisyDARTS) and other randomness in the forward: one seed is drawn per step for
the train loss and one for the val loss, and every evaluation of the same loss reuses its seed.
So ``L_train`` at ``w``, ``w+`` and ``w-`` is one and the same function of the weights: the finite
difference then approximates the derivative of the gradient used in the virtual step, instead of
being dominated by the difference of two noise draws (with fresh noise the quotient ``1/2r``
amplifies that difference by about ``||v|| / 0.02``). The train and val losses see independent
samples, as they would in two separate forward passes.

BatchNorm: the supernet's BN layers (affine-free, batch statistics in training mode) normalize
with the statistics of each evaluation's batch; their running estimates are updated by every
extra forward, as in the DARTS release (they are only used for reporting, never in search).
"""

from __future__ import annotations

import contextlib

import torch

from ...nn import recompute as checkpointing, compiling
from ... import config
from ...errors import UserError
from .base import Estimator, StepContext, draw_seed, loss_at, named_weights, set_grads, zeros_for_none

DEFAULTS: dict = {
    "xi": None,       # the virtual step's learning rate (null = the weights' learning rate)
    "exact": False,   # exact Hessian-vector product by double backward instead of finite differences
    "r": 0.01,        # finite-difference step: epsilon = r / ||grad||
}


class SecondOrder(Estimator):
    def __init__(self, xi: float | None = None, exact: bool = False, r: float = 0.01):
        self.xi, self.exact, self.r = xi, exact, r

    def step(self, model, train_batch, val_batch, ctx: StepContext) -> torch.Tensor:
        # The exact product differentiates twice, which compiled regions do not support.
        with compiling.eager() if self.exact else contextlib.nullcontext():
            return self._step(model, train_batch, val_batch, ctx)

    def _step(self, model, train_batch, val_batch, ctx: StepContext) -> torch.Tensor:
        xi = ctx.weight_lr if self.xi is None else self.xi
        names, weights = zip(*named_weights(model))
        alphas = model.arch_parameters()
        train_seed, val_seed = draw_seed(), draw_seed()

        # The finite-difference form needs only grad_w L_train here: alpha frozen keeps less.
        with contextlib.nullcontext() if self.exact else checkpointing.frozen(alphas):
            loss_train = loss_at(model, ctx.loss_fn, train_batch, seed=train_seed)
            grads_w = torch.autograd.grad(loss_train, weights, allow_unused=True, create_graph=self.exact)
        # Over ranks, every quantity that moves the evaluation point is the global batch's mean:
        # the virtual step's gradient here (differentiably for the exact product), v below.
        grads_w = zeros_for_none(ctx.reduce(grads_w, train_batch, differentiable=self.exact), weights)
        drift = self._momentum_and_decay(weights, ctx.weight_optimizer)
        unrolled = {n: w.detach() - xi * (g + d) for n, w, g, d in zip(names, weights, grads_w, drift)}
        if not self.exact:  # leaves of their own: grad_w' L_val is wanted at w'
            unrolled = {n: t.requires_grad_() for n, t in unrolled.items()}

        loss_val = loss_at(model, ctx.arch_loss, val_batch, unrolled, seed=val_seed)
        if self.exact:
            # w' depends on alpha through grad_w L_train (built with create_graph): the total
            # derivative is grad_alpha L_val(w', a) - xi * grad2_{a,w} L_train . grad_w' L_val.
            set_grads(alphas, ctx.reduce(torch.autograd.grad(loss_val, alphas, allow_unused=True), val_batch))
            return loss_val.detach()

        unrolled_list = list(unrolled.values())
        grads = torch.autograd.grad(loss_val, list(alphas) + unrolled_list, allow_unused=True)
        grad_alpha = zeros_for_none(ctx.reduce(grads[: len(alphas)], val_batch), alphas)
        v = zeros_for_none(ctx.reduce(grads[len(alphas):], val_batch), unrolled_list)  # before w ± r v
        hvp = ctx.reduce(self._finite_difference(model, ctx, train_batch, train_seed, names, weights, alphas, v),
                         train_batch)
        set_grads(alphas, [g - xi * h for g, h in zip(grad_alpha, hvp)])
        return loss_val.detach()

    @staticmethod
    def _momentum_and_decay(weights, optimizer) -> list[torch.Tensor]:
        """``mu * momentum_buffer + wd * w`` per weight, read from the SGD weight optimizer."""
        group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        out = []
        for w in weights:
            group = group_of.get(id(w), {})
            mu, wd = group.get("momentum", 0.0), group.get("weight_decay", 0.0)
            buf = optimizer.state.get(w, {}).get("momentum_buffer")
            d = wd * w.detach()
            out.append(d if buf is None or mu == 0 else d + mu * buf)
        return out

    def _finite_difference(self, model, ctx, batch, seed, names, weights, alphas, v) -> list[torch.Tensor]:
        """``grad2_{alpha,w} L_train(w, alpha) . v`` by central differences (DARTS Eq. 8)."""
        norm = torch.sqrt(sum((t * t).sum() for t in v))
        r = self.r / (norm + 1e-12)  # a tensor: no host sync
        grads = []
        for sign in (1.0, -1.0):
            shifted = {n: w.detach() + sign * r * t for n, w, t in zip(names, weights, v)}
            loss = loss_at(model, ctx.loss_fn, batch, shifted, seed=seed)
            grads.append(zeros_for_none(torch.autograd.grad(loss, alphas, allow_unused=True), alphas))
        return [(gp - gn) / (2 * r) for gp, gn in zip(*grads)]


def build(cfg: dict) -> SecondOrder:
    e = cfg["estimator"]
    return SecondOrder(xi=e["xi"], exact=e["exact"], r=e["r"])


def validate(cfg: dict) -> None:
    e = cfg["estimator"]
    if e["xi"] is not None and (isinstance(e["xi"], bool) or not isinstance(e["xi"], (int, float)) or e["xi"] < 0):
        raise UserError(f"estimator.xi must be null (the weight learning rate) or a number >= 0, got {e['xi']!r}")
    if not e["r"] > 0:
        raise UserError(f"estimator.r must be > 0 (DARTS uses 0.01), got {e['r']}")


config.register_keys(nullable={"estimator.xi": float})
