"""FairDARTS (Chu et al., ECCV 2020): independent sigmoid op weights and the threshold derivation.

* ``edge.weighting: sigmoid`` (:class:`SigmoidWeighting`): an op's weight on an edge is
  ``sigma(alpha_o)``, with no softmax over the edge: the ops no longer compete for a share of 1
  (the paper's "collaborative competition"; the release's ``model_search.py`` mixes
  ``F.sigmoid(alphas)``). Rows have no total (``normalized = False``).
* the zero-one loss (``zero_one.weight``, the paper's ``w_{0-1} L_{0-1}``) is an architecture-loss
  regularizer of its own, for any deterministic weighting: :mod:`noisydarts.methods.zero_one`.
* Derivation (``fairdarts.derivation``, :func:`threshold_masks`): ``threshold`` is the release's
  default ``threshold_sparse`` ("barring with threshold sigma, and |edge| <= 2 per node"): per node
  the two incoming edges with the largest best-op weight, on each its best op if
  ``sigma >= fairdarts.threshold`` (0.85); ``threshold_edge`` (release ``threshold_edge``): on every
  edge the two best ops that reach the threshold; ``darts``: the space's own top-2 derivation on
  sigma(alpha). A node that keeps nothing keeps its best op on its best edge (the release drops
  such an isolated node instead; a genotype here needs an input for every node).
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

from .. import config
from ..errors import UserError
from ..nn.mixed import Weighting

DERIVATIONS = ("threshold", "threshold_edge", "darts")
EDGES_PER_NODE = 2   # release utils.parse: "|edge| <= 2 per node" (threshold_sparse)
OPS_PER_EDGE = 2     # release utils.parse: "top M = 2 operations for one edge" (threshold_edge)

#: ``fairdarts`` section: how a sigmoid-weighted cell is derived (only with ``edge.weighting: sigmoid``).
DEFAULTS = {
    "derivation": "threshold",   # threshold (release threshold_sparse) | threshold_edge | darts
    "threshold": 0.85,           # release train_search.py --op_threshold
}
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


config.SEARCH.register("fairdarts", DEFAULTS, validate=validate_fairdarts, owner=__name__)
