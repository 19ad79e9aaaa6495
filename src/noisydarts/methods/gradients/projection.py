"""Gradient projection between the edges of a cell (PC-DARTS + GP; R. King's thesis, Sec. 2.4.5,
3.3 and 5.2; our reading: ``specs/gradient-projection.md`` Sec. 4.2).

PCGrad ("Gradient Surgery", Yu et al., 2020) applied to the architecture gradient of one step.
For each cell type, the row ``g_e = dL_val/d alpha_e`` of every edge e is a vector over the ops
(all edges share the op order). Edges are grouped (``groups``):

* ``edge_in``: the edges entering the same node (DARTS: groups of 2, 3, 4, 5 edges);
* ``edge_out``: the edges leaving the same node (DARTS: c_{k-2}, c_{k-1} and nodes 0-2; only
  groups of at least 2 edges).

Two edges of a group conflict when ``g~_e . g_f < 0``; then ``g~_e <- g~_e - (g~_e . g_f /
|g_f|^2) g_f`` ("projected onto the normal vector of the other"), always against the ORIGINAL
``g_f``, as in PCGrad. Which pairs and in what order (``order``; three orders x two groupings =
the thesis' six methods):

* ``random``: PCGrad. For each e, ``g~_e = g_e``, then project against every other f of its
  group, in a fresh random permutation.
* ``short_to_long`` ("project the shortest path onto the longest"): only the shorter edge of a
  pair is changed: for each e, project against every f with ``L(f) > L(e)``, longest first.
* ``long_to_short``: the roles swapped: against every f with ``L(f) < L(e)``, shortest first.

Ties in L (DARTS: the two edges leaving the cell inputs of one node) are broken at random, each
step: the tied edges get a random order, and the one ranked shorter is projected.

Edge length L (an **interpretation**: the thesis' definition, "the maximum number of edges that
the data can pass through if an edge is used", lost its figure). ``length: through`` (default):
the longest input-to-output path through the edge, ``L(i->j) = depth(i) + 1 + height(j)``, with
depth the longest path from a cell input to a node and height the longest path from a node to
the node that has no outgoing edge. DARTS: depth(c_{k-2}) = depth(c_{k-1}) = 0, depth(node m) =
m - 1, height(j) = 5 - j; NB201 (node 0 input, node 3 output): depth(i) = i, height(j) = 3 - j.
``length: downstream`` reads Fig. 3.2's caption ("the longest path that the data can take to
get to the next step from that edge") as the path from the edge on: ``L = 1 + height(j)``; all
edges into one node are then tied, so ``edge_in`` orders become random.

The thesis never mentions beta in the projection: ``include_beta: false`` leaves ``beta.grad``
alone; ``true`` projects ``[g_alpha_e, g_beta_e]`` as one vector. With softmax alpha every row
sums to zero over the ops, and a projection (a combination of such rows) keeps that.

The random permutations and tie-breaks come from a ``torch.Generator`` owned by the transform
(seeded by the search seed); its state goes into the search checkpoint.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from ... import config
from ...errors import UserError
from .base import GradientTransform

#: The ``arch.projection`` config section.
DEFAULTS = {
    "groups": "none",            # none | edge_in | edge_out: which edges' gradients are projected against each other
    "order": "random",           # random (PCGrad) | short_to_long | long_to_short
    "include_beta": False,       # project [g_alpha, g_beta] of an edge as one vector
    "length": "through",         # edge length L: through (longest path through the edge) | downstream
}
GROUPS = ("none", "edge_in", "edge_out")
ORDERS = ("random", "short_to_long", "long_to_short")
LENGTHS = ("through", "downstream")


# --- the cell graph ----------------------------------------------------------------------------

def depths_and_heights(edges) -> tuple[dict[int, int], dict[int, int]]:
    """Longest path (in edges) from a node without incoming edges to each node, and from each
    node to a node without outgoing edges. ``edges``: ``(target, source)`` pairs of a DAG."""
    incoming, outgoing = defaultdict(list), defaultdict(list)
    nodes = set()
    for t, s in edges:
        incoming[t].append(s)
        outgoing[s].append(t)
        nodes |= {t, s}
    depth, height = {}, {}

    def d(n):
        if n not in depth:
            depth[n] = max((d(s) + 1 for s in incoming[n]), default=0)
        return depth[n]

    def h(n):
        if n not in height:
            height[n] = max((h(t) + 1 for t in outgoing[n]), default=0)
        return height[n]

    for n in sorted(nodes):
        d(n), h(n)
    return depth, height


def edge_lengths(edges, length: str = "through") -> list[int]:
    """L of every edge (see the module docstring)."""
    depth, height = depths_and_heights(edges)
    if length == "through":
        return [depth[s] + 1 + height[t] for t, s in edges]
    return [1 + height[t] for t, s in edges]


def edge_groups(edges, groups: str) -> list[list[int]]:
    """Row indices of the edges that share a target (``edge_in``) or a source (``edge_out``),
    groups of at least 2 edges, in the order of the nodes."""
    by_node = defaultdict(list)
    for k, (t, s) in enumerate(edges):
        by_node[t if groups == "edge_in" else s].append(k)
    return [rows for _, rows in sorted(by_node.items()) if len(rows) >= 2]


# --- the transform -----------------------------------------------------------------------------

class EdgeProjection(GradientTransform):
    """Projects the architecture gradient rows of the edges of each group (see the module
    docstring). ``arch_edges``: ``{cell type: [(target, source) per alpha row]}`` (the
    supernet's :meth:`~noisydarts.nn.supernet.Supernet.arch_edges`)."""

    def __init__(self, arch_edges: dict, groups: str = "edge_in", order: str = "random",
                 include_beta: bool = False, length: str = "through", seed: int = 0):
        self.kinds = list(arch_edges)
        self.order, self.include_beta = order, include_beta
        self.generator = torch.Generator().manual_seed(seed)
        # All cell types' rows in one matrix: kind k's rows start at offsets[k].
        offsets, members, partners, lengths = {}, [], [], []
        for kind, edges in arch_edges.items():
            offsets[kind] = len(lengths)
            for group in edge_groups(edges, groups):
                for e in group:
                    members.append(offsets[kind] + e)
                    partners.append([offsets[kind] + f for f in group if f != e])
            lengths += edge_lengths(edges, length)
        self.offsets, self.rows = offsets, len(lengths)
        width = max((len(p) for p in partners), default=0)
        self.members = torch.tensor(members, dtype=torch.long)
        self.partners = torch.tensor([p + [-1] * (width - len(p)) for p in partners], dtype=torch.long).view(-1, width)
        self.lengths = torch.tensor(lengths, dtype=torch.float64)
        self._on_device: dict = {}

    # --- which partners, in which order ---
    def plan(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(partners, valid)``, both ``[edges, slots]``: the rows each member edge is projected
        against, in order (slot 0 first); invalid slots are skipped. Draws this step's random
        permutations / tie-breaks from the transform's generator (on the CPU: the plan does not
        depend on the gradients)."""
        partners = self.partners
        exists = partners >= 0
        if self.order == "random":
            key = torch.rand(partners.shape, generator=self.generator, dtype=torch.float64)
            valid = exists
        else:
            # A strict order per step: L, ties broken by a random fraction (< 1, so distinct
            # lengths keep their order).
            rank = self.lengths + 0.5 * torch.rand(self.rows, generator=self.generator, dtype=torch.float64)
            mine, theirs = rank[self.members][:, None], rank[partners.clamp(min=0)]
            if self.order == "short_to_long":
                valid, key = exists & (theirs > mine), -theirs      # only the shorter changes; longest first
            else:
                valid, key = exists & (theirs < mine), theirs       # only the longer changes; shortest first
        key = key.masked_fill(~valid, float("inf"))
        order = key.argsort(dim=1, stable=True)
        return partners.gather(1, order), valid.gather(1, order)

    # --- the projection ---
    @staticmethod
    def project(g: torch.Tensor, members: torch.Tensor, partners: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``g`` ``[rows, dim]`` with the rows ``members`` projected, PCGrad-style, against the
        original rows ``partners[:, 0]``, ``partners[:, 1]``, ... where they conflict. All
        member edges at once, one slot at a time; no host synchronization."""
        out = g[members]
        for slot in range(partners.shape[1]):
            g_f = g[partners[:, slot].clamp(min=0)]
            dot = (out * g_f).sum(1)
            norm2 = (g_f * g_f).sum(1)
            coef = torch.where(valid[:, slot] & (dot < 0), dot / norm2.clamp_min(torch.finfo(g.dtype).tiny), 0.0)
            out = out - coef[:, None] * g_f
        return g.index_copy(0, members, out)

    def __call__(self, model) -> None:
        if not len(self.members):
            return
        arch = model.arch
        alphas = [arch[f"alpha_{kind}"] for kind in self.kinds]
        betas = [arch[f"beta_{kind}"] for kind in self.kinds] if self.include_beta else []
        ref = alphas[0]
        parts = [p.grad if p.grad is not None else torch.zeros_like(p) for p in alphas]
        g = torch.cat(parts)
        if betas:
            g = torch.cat([g, torch.cat([b.grad if b.grad is not None else torch.zeros_like(b) for b in betas])[:, None]], 1)
        partners, valid = self.plan()
        device = ref.device
        if device not in self._on_device:
            self._on_device[device] = self.members.to(device)
        projected = self.project(g, self._on_device[device], partners.to(device, non_blocking=True),
                                 valid.to(device, non_blocking=True))
        ops = ref.shape[1]
        for kind, p in zip(self.kinds, alphas):
            if p.grad is not None:
                start = self.offsets[kind]
                p.grad.copy_(projected[start:start + len(p), :ops])
        for kind, p in zip(self.kinds, betas):
            if p.grad is not None:
                start = self.offsets[kind]
                p.grad.copy_(projected[start:start + len(p), ops])

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])


# --- config ------------------------------------------------------------------------------------

def validate(cfg: dict) -> None:
    p = cfg["arch"]["projection"]
    for key, choices in (("groups", GROUPS), ("order", ORDERS), ("length", LENGTHS)):
        if p[key] not in choices:
            raise UserError(f"arch.projection.{key} must be one of {', '.join(choices)}, got {p[key]!r}")


def build(cfg: dict, model) -> EdgeProjection | None:
    p = cfg["arch"]["projection"]
    if p["groups"] == "none":
        return None
    arch_edges = model.arch_edges()
    if arch_edges is None:
        raise UserError(f"arch.projection.groups={p['groups']} projects gradients between the edges of a cell, and the "
                        f"{cfg['space']['name']} space's architecture rows are not cell edges: set arch.projection.groups=none")
    if p["include_beta"] and any(f"beta_{kind}" not in model.arch for kind in arch_edges):
        raise UserError("arch.projection.include_beta=true needs edge weights beta: set edge.weighting=edge_norm "
                        "(or arch.projection.include_beta=false)")
    return EdgeProjection(arch_edges, p["groups"], p["order"], p["include_beta"], p["length"], seed=cfg["seed"])


config.SEARCH.register("arch.projection", DEFAULTS, validate=validate, owner=__name__)
