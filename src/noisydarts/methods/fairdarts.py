"""FairDARTS (Chu et al., ECCV 2020): independent sigmoid op weights and the zero-one loss.

* ``edge.weighting: sigmoid`` (:class:`SigmoidWeighting`): an op's weight on an edge is
  ``sigma(alpha_o)``, with no softmax over the edge: the ops no longer compete for a share of 1
  (the paper's "collaborative competition"; the release's ``model_search.py`` mixes
  ``F.sigmoid(alphas)``). Rows have no total (``normalized = False``).
* ``zero_one.weight > 0`` (:class:`ZeroOneLoss`): the paper's ``L_total = L_val + w_{0-1} L_{0-1}``
  with ``L_{0-1} = -1/N sum_i (sigma(alpha_i) - 0.5)^2`` over the N op weights of all cell types
  together (release ``separate_loss.py``, ``ConvSeparateLoss``: ``-mse_loss(sigmoid(alphas), 0.5)``
  over normal and reduce, weight 10; ``none``, absent from the release's ops, is left out).
  ``form: l1`` is the release's ``TriSeparateLoss``, ``-1/N sum_i |sigma(alpha_i) - 0.5|``. It
  pushes every weight away from 1/2, towards 0 or 1. It is a term of alpha alone, so it enters the
  architecture loss only (the release also adds it to the weight step's loss, where it has no
  gradient w.r.t. the weights). The paper's equation numbers were not checked (no copy of its text
  was at hand): the forms are the release's.
* Derivation (``fairdarts.derivation``, :func:`threshold_masks`): ``threshold`` is the release's
  default ``threshold_sparse`` ("barring with threshold sigma, and |edge| <= 2 per node"): per node
  the two incoming edges with the largest best-op weight, on each its best op if
  ``sigma >= fairdarts.threshold`` (0.85); ``threshold_edge`` (release ``threshold_edge``): on every
  edge the two best ops that reach the threshold; ``darts``: the space's own top-2 derivation on
  sigma(alpha). A node that keeps nothing keeps its best op on its best edge (the release drops
  such an isolated node instead; a genotype here needs an input for every node).

The zero-one loss acts on the op weights of a deterministic weighting (:data:`ZERO_ONE_WEIGHTINGS`;
with softmax or edge normalization's op weights it is an ablation, which the release's authors say
does not suit the softmax) and is refused with the others.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

from .. import config
from ..errors import UserError
from ..nn.mixed import Weighting
from .regularizers import Regularizer, register_regularizer

DERIVATIONS = ("threshold", "threshold_edge", "darts")
FORMS = ("l2", "l1")
EDGES_PER_NODE = 2   # release utils.parse: "|edge| <= 2 per node" (threshold_sparse)
OPS_PER_EDGE = 2     # release utils.parse: "top M = 2 operations for one edge" (threshold_edge)

#: ``fairdarts`` section: how a sigmoid-weighted cell is derived (only with ``edge.weighting: sigmoid``).
DEFAULTS = {
    "derivation": "threshold",   # threshold (release threshold_sparse) | threshold_edge | darts
    "threshold": 0.85,           # release train_search.py --op_threshold
}
#: ``zero_one`` section: the zero-one loss in the architecture loss, for any deterministic weighting.
ZERO_ONE_DEFAULTS = {
    "weight": 0.0,               # w_{0-1}; 0 = off (the release: --aux_loss_weight 10)
    "form": "l2",                # l2: -mean (w - 1/2)^2 (release default) | l1: -mean |w - 1/2|
}
#: the weightings whose op weights are deterministic, which the zero-one loss can push to 0 or 1; a
#: stochastic one (SI-VDNAS' dropout, DrNAS' Dirichlet sample) is refused, as is any not listed here
ZERO_ONE_WEIGHTINGS = ("sigmoid", "softmax", "edge_norm")


def zero_one_loss(weights: torch.Tensor, form: str = "l2") -> torch.Tensor:
    """``L_{0-1}``: ``-mean (w - 1/2)^2`` (``l2``, the paper's) or ``-mean |w - 1/2|`` (``l1``)."""
    distance = weights - 0.5
    return -(distance.square() if form == "l2" else distance.abs()).mean()


def threshold_masks(weights: torch.Tensor, targets, threshold: float, derivation: str = "threshold",
                    never=()) -> torch.Tensor:
    """The bool ``[edges, ops]`` keep mask of a threshold derivation on ``[edges, ops]`` weights
    (``targets[k]``: the node edge ``k`` enters). Ops at the indices in ``never`` (``none``) are
    never kept. Ties go to the earlier edge and op, as in the DARTS derivation."""
    w = torch.as_tensor(weights, dtype=torch.float64).detach().cpu().clone()
    if list(never):
        w[:, list(never)] = -1.0
    best_w, best_op = w.max(dim=1)
    keep = torch.zeros(w.shape, dtype=torch.bool)
    targets = list(targets)
    for target in sorted(set(targets)):
        incoming = [k for k, t in enumerate(targets) if t == target]
        if derivation == "threshold_edge":
            for k in incoming:
                top = sorted(range(w.shape[1]), key=lambda o: -float(w[k, o]))[:OPS_PER_EDGE]
                for o in top:
                    keep[k, o] = bool(w[k, o] >= threshold)
        else:
            for k in sorted(incoming, key=lambda k: -float(best_w[k]))[:EDGES_PER_NODE]:
                keep[k, best_op[k]] = bool(best_w[k] >= threshold)
        if not keep[incoming].any():  # nothing reached the threshold: the node's best op on its best edge
            k = max(incoming, key=lambda k: (float(best_w[k]), -k))
            keep[k, best_op[k]] = True
    return keep


class SigmoidWeighting(Weighting):
    """FairDARTS: ``sigma(alpha)``, each op's weight independent of the others on its edge."""

    normalized = False  # no softmax: a row has no total to keep

    derivation_keys = ("fairdarts.derivation", "fairdarts.threshold")

    def __init__(self, arch: nn.ParameterDict, kinds, edge_targets, *, derivation: str = "threshold",
                 threshold: float = 0.85):
        super().__init__()
        self.arch = [arch]  # a reference, not a submodule: the supernet owns the parameters
        self.kinds, self.targets = tuple(kinds), list(edge_targets)
        self.derivation, self.threshold = derivation, float(threshold)
        self.derivations = (derivation, *(d for d in DERIVATIONS if d != derivation))

    @classmethod
    def from_config(cls, cfg: dict):
        return functools.partial(cls, **cfg["fairdarts"])

    def forward(self, kind: str) -> torch.Tensor:
        return torch.sigmoid(self.arch[0][f"alpha_{kind}"])

    def keep_masks(self, kind: str, derivation: str | None = None, never=()) -> torch.Tensor | None:
        derivation = derivation or self.derivation
        if derivation not in self.derivations:
            raise UserError(f"derivation {derivation!r} is not available for the sigmoid weighting "
                            f"(it has {', '.join(self.derivations)})")
        if derivation == "darts":
            return None  # the space's own derivation on sigma(alpha)
        with torch.no_grad():
            return threshold_masks(self(kind), self.targets, self.threshold, derivation, never)

    @torch.no_grad()
    def metrics(self) -> dict:
        """How many weights per cell type reach the threshold (what a threshold derivation keeps)."""
        return {"sigmoid_above_threshold": {kind: int((self(kind) >= self.threshold).sum()) for kind in self.kinds}}

    def extra_repr(self) -> str:
        return f"derivation={self.derivation}, threshold={self.threshold}"


class ZeroOneLoss(Regularizer):
    """``weight * L_{0-1}`` over the op weights of every cell type together (one mean, as the
    release's loss over ``cat(normal, reduce)``), ``none`` left out (the release's op set has
    none)."""

    def __init__(self, weight: float, form: str = "l2"):
        super().__init__()
        self.weight, self.form = float(weight), form

    def forward(self, supernet: nn.Module) -> torch.Tensor:
        # ``none`` is never computed: no data gradient reaches its weight, so the loss alone would
        # push it to 0 or 1 at random (and NAS-Bench-201's argmax may pick it); it is left out.
        ops = [k for k, name in enumerate(getattr(supernet, "op_names", ())) if name != "none"] or None
        rows = [supernet.weighting(kind) for kind in supernet.kinds]
        rows = [(w if ops is None else w[:, ops]).reshape(-1) for w in rows]
        return self.weight * zero_one_loss(torch.cat(rows), self.form)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, form={self.form}"


def build_zero_one(cfg: dict) -> list[Regularizer]:
    section = cfg["zero_one"]
    return [ZeroOneLoss(section["weight"], section["form"])] if section["weight"] > 0 else []


def validate_fairdarts(cfg: dict) -> None:
    """The ``fairdarts`` keys configure the sigmoid weighting alone: refused with another one."""
    section = cfg["fairdarts"]
    if cfg["edge"]["weighting"] != "sigmoid":
        changed = [k for k, v in section.items() if v != DEFAULTS[k]]
        if changed:
            raise UserError(f"fairdarts.{changed[0]}={section[changed[0]]} is set, but edge.weighting is "
                            f"{cfg['edge']['weighting']} and the fairdarts keys configure the sigmoid weighting "
                            "only: set edge.weighting=sigmoid, or drop the fairdarts keys")
    config.check_choice("fairdarts.derivation", section["derivation"], DERIVATIONS)
    t = section["threshold"]
    config.check(not isinstance(t, bool) and 0.0 < t < 1.0,
                 f"fairdarts.threshold is a sigmoid weight in (0, 1) (the release: 0.85), got {t}")


def validate_zero_one(cfg: dict) -> None:
    """The weight and form of the loss; refused with a stochastic or unlisted weighting."""
    section, weighting = cfg["zero_one"], cfg["edge"]["weighting"]
    w = section["weight"]
    config.check(not isinstance(w, bool) and w >= 0, f"zero_one.weight must be >= 0 (0 = off; the release: 10), got {w}")
    config.check_choice("zero_one.form", section["form"], FORMS)
    if w == 0 and section["form"] != ZERO_ONE_DEFAULTS["form"]:
        raise UserError(f"zero_one.form={section['form']} is set, but zero_one.weight is 0 (the loss is off): "
                        "set zero_one.weight, e.g. 10 as the release")
    if w > 0 and weighting not in ZERO_ONE_WEIGHTINGS:
        raise UserError(f"zero_one.weight={w} cannot be used with edge.weighting={weighting} (the loss pushes "
                        f"deterministic op weights to 0 or 1): set zero_one.weight=0, or edge.weighting to one of "
                        f"{', '.join(ZERO_ONE_WEIGHTINGS)}")


config.SEARCH.register("fairdarts", DEFAULTS, validate=validate_fairdarts, owner=__name__)
config.SEARCH.register("zero_one", ZERO_ONE_DEFAULTS, validate=validate_zero_one, owner=__name__)
register_regularizer("zero_one", build_zero_one)
