"""The mixed edge of a search cell, and the weightings that feed it.

A mixed edge computes ``sum_k w_k * o_k(x)`` over its candidate operations (Eq. 5-6 of
NoisyDARTS). What varies between methods is kept out of the search loop and plugs in here:

* **weights** come from a *weighting* (:data:`WEIGHTINGS`), which maps the architecture
  parameters of one cell type to ``[edges, ops]`` op weights (``weighting(kind)``) and,
  optionally, ``[edges]`` edge weights (``weighting.edge_weights(kind)``) that multiply an
  edge's whole output. DARTS: softmax op weights, no edge weights. PC-DARTS edge normalization:
  the edge weight is the softmax of ``beta`` over the edges entering the same node, and it
  multiplies the whole mixed-edge output, the channels that bypass the ops included (PC-DARTS
  ``model_search.py``; Sec. 3.5 of the PC-DARTS gradient-projection thesis). What derivation
  ranks and the plots show is ``weighting.effective(kind)`` = op weight x edge weight. A
  stochastic weighting (SI-VDNAS variational dropout on op and edge weights,
  :mod:`noisydarts.methods.sivdnas`) fits the same interface: in training mode it returns per-sample
  weights ``[edges, ops, B, 1, 1, 1]``, whose rows broadcast against the ops' ``[B, C, H, W]``
  outputs in :class:`MixedEdge` unchanged (see :class:`Weighting` for the whole contract).
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

from ..errors import UserError
from .ops import POOLING_OPS, batch_norm, build_op


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Output channel ``j * groups + g`` is input channel ``g * (C / groups) + j`` (ShuffleNet;
    PC-DARTS). A channels_last tensor stays channels_last (else every later op converts)."""
    b, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last):
        nhwc = x.permute(0, 2, 3, 1)
        return nhwc.reshape(b, h, w, groups, c // groups).transpose(3, 4).reshape(b, h, w, c).permute(0, 3, 1, 2)
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
                 partial_channels: int = 1, auxiliary_skip: nn.Module | None = None):
        """``auxiliary_skip``: DARTS-' auxiliary skip (:class:`noisydarts.methods.dartsminus.AuxiliarySkip`,
        or any module with a ``beta`` tensor and ``make_op(C, stride, affine, track_stats)``), or None."""
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
        # DARTS-: the edge's own auxiliary op (an identity, or a factorized reduce at stride 2); β is
        # one buffer of the supernet's, shared by all edges, so it is held as a reference, not a submodule.
        self.aux_op = auxiliary_skip.make_op(C, stride, affine, track_stats) if auxiliary_skip is not None else None
        self._auxiliary_skip = [auxiliary_skip] if auxiliary_skip is not None else None

    def forward(self, x: torch.Tensor, weights: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """``weights``: this edge's row of the cell's op weights, one entry per op name.
        ``scale``: a weight of the whole edge (PC-DARTS edge normalization), or None.

        The scale multiplies the edge's entire output, ``scale * shuffle(cat(sum_k w_k o_k(x_op),
        bypass))``; it is applied as ``sum_k (scale w_k) o_k(x_op)`` and ``scale * bypass``, the
        same numbers without another full-size product to keep for the backward pass (the
        bypass is a slice of the input, which autograd keeps anyway).

        With DARTS-' auxiliary skip the edge adds ``beta * aux(x)`` on its whole input, after the
        shuffle, outside every architecture weight (the scale included)."""
        if scale is not None:
            weights = weights * scale
        x_in = x
        if self.partial > 1:
            c_op = x.shape[1] // self.partial
            x, bypass = x[:, :c_op], x[:, c_op:]
        w = weights.unbind(0)
        out = None
        for k, op, transform in zip(self.active, self.ops, self.transforms):
            y = apply_op(op, x, transform)
            # fused multiply-add: one kernel and one new tensor per op instead of two (``out + y * w``);
            # out of place, so dtype promotion and autograd are those of the unfused sum
            out = y * w[k] if out is None else torch.addcmul(out, y, w[k])
        if self.partial > 1:
            if self.bypass_pool is not None:
                bypass = self.bypass_pool(bypass)
            if scale is not None:
                bypass = bypass * scale
            out = channel_shuffle(torch.cat([out, bypass], dim=1), self.partial)
        if self.aux_op is not None:
            out = torch.addcmul(out, self.aux_op(x_in), self._auxiliary_skip[0].beta)
        return out

    # --- progressive learning (DrNAS, :mod:`noisydarts.methods.drnas`): prune ops, change K -------
    def prune_ops(self, keep) -> None:
        """Keep only the ops at the row positions in ``keep`` (indices into ``op_names``): the others
        leave the edge with their parameters and are never computed again, so their weights must
        be 0 from now on (the weighting masks them)."""
        keep = {int(k) for k in keep}
        picked = [i for i, k in enumerate(self.active) if k in keep]
        self.active = [self.active[i] for i in picked]
        self.ops = nn.ModuleList(self.ops[i] for i in picked)
        self.transforms = [self.transforms[i] for i in picked]

    def _op_like(self, k: int, old: nn.Module, c_op: int) -> nn.Module:
        """Op ``op_names[k]`` at ``c_op`` channels, built as ``old`` was (BN affine/statistics, BN after a pool)."""
        bn = next((m for m in old.modules() if isinstance(m, nn.BatchNorm2d)), None)
        affine, track = (bn.affine, bn.track_running_stats) if bn is not None else (False, True)
        op = build_op(self.op_names[k], c_op, self.stride, affine, track)
        if self.op_names[k] in POOLING_OPS and isinstance(old, nn.Sequential) and not isinstance(op, nn.Sequential):
            op = nn.Sequential(op, batch_norm(c_op, affine, track))
        return op

    def widen_problem(self, partial_channels: int, channels: int) -> str | None:
        """Why this edge (``channels`` in) cannot take K = ``partial_channels``, or None. The ops are
        built on the meta device, so an op's own constraint (an even factorized reduce) is found."""
        if channels % partial_channels:
            return f"K={partial_channels} does not divide the {channels} channels of an edge"
        try:
            with torch.device("meta"):
                for k, op in zip(self.active, self.ops):
                    self._op_like(k, op, channels // partial_channels)
        except UserError as e:
            return str(e)
        return None

    def widen(self, partial_channels: int, channels: int, generator: torch.Generator | None = None):
        """Send ``channels / partial_channels`` channels through the ops from now on (DrNAS' second
        stage: K 6 -> 4). Each op is rebuilt at its new width and its tensors are copied Net2Net-style
        (the release's ``net2wider.py``): channel ``j`` of a widened dimension is old channel
        ``map[j]``, ``map`` = the old channels then random old ones (``generator``), one map per
        (old size, new size) in an op so that a copied channel is the same one through the op.

        Returns ``(old parameter, new parameter, expand)`` triples; ``expand(t)`` maps a tensor shaped
        like the old parameter (an optimizer's momentum) as the parameter was mapped."""
        problem = self.widen_problem(partial_channels, channels)
        if problem:
            raise UserError(problem)
        c_op, pairs, ops = channels // partial_channels, [], []
        for k, old in zip(self.active, self.ops):
            new = self._op_like(k, old, c_op)
            maps: dict[tuple[int, int], torch.Tensor] = {}

            def expand(t: torch.Tensor, like: torch.Tensor, maps=maps) -> torch.Tensor:
                for d in range(t.dim()):
                    n_old, n_new = t.shape[d], like.shape[d]
                    if n_old != n_new:
                        if (n_old, n_new) not in maps:
                            extra = torch.randint(0, n_old, (max(n_new - n_old, 0),), generator=generator)
                            maps[(n_old, n_new)] = torch.cat([torch.arange(min(n_old, n_new)), extra])
                        t = t.index_select(d, maps[(n_old, n_new)].to(t.device))
                return t

            old_state, new_state = old.state_dict(), new.state_dict()
            new.load_state_dict({key: expand(old_state[key], like) for key, like in new_state.items()})
            reference = next(iter(old_state.values()), None)
            if reference is not None:
                new.to(reference.device)
            old_params = dict(old.named_parameters())
            for name, p in new.named_parameters():
                if old_params[name].dim() == 4 and old_params[name].is_contiguous(memory_format=torch.channels_last):
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
                pairs.append((old_params[name], p, lambda t, like=p, f=expand: f(t, like)))
            ops.append(new.train(old.training))
        self.ops = nn.ModuleList(ops)
        self.partial = partial_channels
        self.bypass_pool = nn.MaxPool2d(2, 2) if partial_channels > 1 and self.stride == 2 else None
        return pairs


# --- weightings: architecture parameters -> [edges, ops] op weights and [edges] edge weights ----

class Weighting(nn.Module):
    """The contract between a supernet and a weighting; the defaults are those of a deterministic
    weighting (the DARTS softmax), so a weighting overrides only what it changes.

    ``forward(kind)`` returns the ``[edges, ops]`` weights of cell type ``kind``. A weighting with
    ``per_sample = True`` is called as ``forward(kind, batch_size)`` and may return
    ``[edges, ops, B, 1, 1, 1]`` in training mode (one weight per sample: Gaussian dropout noise);
    in eval mode every weighting returns ``[edges, ops]``. The supernet calls the hooks below
    through its own methods of the same purpose (:class:`noisydarts.nn.supernet.Supernet`), so the
    search loop never asks which weighting it has.
    """

    per_sample: bool = False
    #: whether the supernet asks for the weights anew for every cell in training mode (independent
    #: noise per cell: SI-VDNAS' ``granularity: cell``); otherwise once per forward
    per_cell: bool = False
    #: whether the weights are drawn anew on every forward in training mode (SI-VDNAS' dropout
    #: noise, DrNAS' Dirichlet samples): there is no fixed weight to perturb (SDARTS refuses them)
    stochastic: bool = False
    #: names in ``arch`` the architecture optimizer must not weight-decay (e.g. log-variances)
    no_weight_decay: tuple[str, ...] = ()
    #: derivations this weighting offers (:meth:`keep_masks`); the first is the default
    derivations: tuple[str, ...] = ()
    #: the config keys (dotted) that choose this weighting's own selection (:meth:`keep_masks`); a
    #: space that derives its cells by its own rule refuses them when set
    derivation_keys: tuple[str, ...] = ()
    #: whether a row's weights have a total worth keeping (a softmax's 1); a space that removes
    #: some ops from a row (mbv2's restricted layers) rescales the rest to it only then
    normalized: bool = True

    def begin_step(self) -> None:
        """Called once per search iteration, before its architecture and weight steps."""

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Per-epoch schedules."""

    def set_search_data(self, num_train: int, num_val: int) -> None:
        """Sizes of the search-train and search-val sets (for terms normalized per example)."""

    def reference_weights(self, kind: str) -> torch.Tensor | None:
        """Deterministic ``[edges, ops]`` weights whose row totals stand for those of a sampled
        forward (a stochastic weighting's mean weights in training mode), or None: the weights
        themselves are deterministic."""
        return None

    def edge_weights(self, kind: str) -> torch.Tensor | None:
        """``[edges]`` weights that multiply each edge's whole output, or None (no edge weights)."""
        return None

    def effective(self, kind: str) -> torch.Tensor:
        """``[edges, ops]`` op weight x edge weight: what derivation ranks and the plots show."""
        w, e = self(kind), self.edge_weights(kind)
        return w if e is None else w * e[:, None]

    def selection_scores(self, kind: str) -> torch.Tensor:
        """``[edges, ops]`` scores a per-edge argmax derivation ranks ops by (eval mode)."""
        return self.effective(kind)

    def keep_masks(self, kind: str, derivation: str | None = None, never=()) -> torch.Tensor | None:
        """A bool ``[edges, ops]`` keep mask, when the weighting selects the architecture itself
        (any number of ops per edge and edges per node); None: the space's own derivation.
        Ops at the indices in ``never`` (``none``) are never kept."""
        return None

    def metrics(self) -> dict:
        """Numbers about the weighting's state worth logging every epoch (JSON)."""
        return {}

