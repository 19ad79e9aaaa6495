"""The mixed edge of a search cell, and the weightings that feed it.

A mixed edge computes ``sum_k w_k * o_k(x)`` over its candidate operations (Eq. 5-6 of
NoisyDARTS). What varies between methods is kept out of the search loop and plugs in here:

* **weights** come from a *weighting* (:data:`WEIGHTINGS`), which maps the architecture
  parameters of one cell type to an effective ``[edges, ops]`` weight matrix: the DARTS softmax,
  or PC-DARTS edge normalization, which multiplies each row by a per-edge weight (softmax of
  ``beta`` over the edges entering the same node, Sec. 3.5 of the PC-DARTS gradient-projection
  paper). A stochastic weighting (SI-VDNAS variational dropout on op and edge weights) fits the
  same interface: it returns sampled weights in training mode.
* **op transforms** act on one op: NoisyDARTS noise on ``skip_connect`` (and the release's
  search-time drop-path there). A transform is a callable on the op's output, or, if it has a
  ``wrap(op, x)`` method, it runs the op itself (to act on its input as well, see
  :func:`apply_op`).
* **partial channels** (PC-DARTS): only ``1/K`` of the channels go through the ops, the rest
  bypass the edge, then channels are shuffled.

``none`` is never computed: its output is zero, so it adds nothing to the sum and its weight
gets no gradient through it. It still takes part in the softmax, as in DARTS.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .errors import UserError
from .ops import POOLING_OPS, batch_norm, build_op


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def apply_op(op: nn.Module, x: torch.Tensor, transform: Callable | None) -> torch.Tensor:
    """``op(x)`` under an op transform: ``transform.wrap(op, x)`` if it has one (it may act
    on the input and the output), else ``transform(op(x))``."""
    if transform is None:
        return op(x)
    wrap = getattr(transform, "wrap", None)
    return wrap(op, x) if wrap is not None else transform(op(x))


class MixedEdge(nn.Module):
    def __init__(self, op_names, C: int, stride: int, *, affine: bool = False, track_stats: bool = True,
                 bn_after_pool: bool = False, op_transforms: dict[str, Callable] | None = None,
                 partial_channels: int = 1):
        super().__init__()
        if C % partial_channels:
            raise UserError(f"partial_channels={partial_channels} does not divide the {C} channels of an edge")
        self.op_names = list(op_names)
        self.stride, self.partial = stride, partial_channels
        self.active = [k for k, name in enumerate(self.op_names) if name != "none"]
        c_op = C // partial_channels
        ops = []
        for k in self.active:
            op = build_op(self.op_names[k], c_op, stride, affine, track_stats)
            if bn_after_pool and self.op_names[k] in POOLING_OPS:
                op = nn.Sequential(op, batch_norm(c_op, affine, track_stats))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        # Plain dict, not submodules: a transform (the noise) is one module shared by all edges,
        # registered once on the supernet, so that .train()/.eval() reach it exactly once.
        transforms = op_transforms or {}
        self.transforms = [transforms.get(self.op_names[k]) for k in self.active]
        self.bypass_pool = nn.MaxPool2d(2, 2) if partial_channels > 1 and stride == 2 else None

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: this edge's row of the cell's weight matrix, one entry per op name."""
        if self.partial > 1:
            c_op = x.shape[1] // self.partial
            x, bypass = x[:, :c_op], x[:, c_op:]
        w = weights.unbind(0)
        out = None
        for k, op, transform in zip(self.active, self.ops, self.transforms):
            y = apply_op(op, x, transform)
            out = y * w[k] if out is None else out + y * w[k]
        if self.partial > 1:
            if self.bypass_pool is not None:
                bypass = self.bypass_pool(bypass)
            out = channel_shuffle(torch.cat([out, bypass], dim=1), self.partial)
        return out


# --- weightings: architecture parameters -> effective [edges, ops] weights ---------------------

class SoftmaxWeighting(nn.Module):
    """DARTS: ``softmax(alpha)`` over the ops of each edge (Eq. 2 of DARTS)."""

    def __init__(self, arch: nn.ParameterDict, kinds, edge_targets):
        super().__init__()
        self.arch = [arch]  # a reference, not a submodule: the supernet owns the parameters

    def forward(self, kind: str) -> torch.Tensor:
        return torch.softmax(self.arch[0][f"alpha_{kind}"], dim=-1)


class EdgeNormWeighting(SoftmaxWeighting):
    """PC-DARTS edge normalization: each edge's op weights are scaled by ``softmax(beta)`` over
    the edges that enter the same node; ``beta`` starts at zero (equal edges)."""

    def __init__(self, arch: nn.ParameterDict, kinds, edge_targets):
        super().__init__(arch, kinds, edge_targets)
        targets = torch.as_tensor(list(edge_targets))
        self.register_buffer("targets", targets, persistent=False)
        self.num_nodes = int(targets.max()) + 1
        for kind in kinds:
            arch[f"beta_{kind}"] = nn.Parameter(torch.zeros(len(targets)))

    def edge_weights(self, kind: str) -> torch.Tensor:
        beta = self.arch[0][f"beta_{kind}"]
        # Softmax within groups of edges that share a target node, without a Python loop.
        shifted = beta - beta.detach().max()
        e = shifted.exp()
        denom = torch.zeros(self.num_nodes, dtype=e.dtype, device=e.device).index_add(0, self.targets, e)
        return e / denom[self.targets]

    def forward(self, kind: str) -> torch.Tensor:
        return super().forward(kind) * self.edge_weights(kind)[:, None]


WEIGHTINGS = {"softmax": SoftmaxWeighting, "edge_norm": EdgeNormWeighting}
