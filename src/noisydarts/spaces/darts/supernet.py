"""The DARTS cell space's supernet and derivation (Liu et al., 2019), as searched by NoisyDARTS.

Supernet: a 3x3 stem conv to ``3C`` channels + BN, then ``layers`` cells with reduction cells at
1/3 and 2/3 of the depth (channels doubled there), global average pooling and a linear
classifier. A cell has two inputs (the two previous cells' outputs, c_{k-2} and c_{k-1}), ``nodes``
intermediate nodes, a mixed edge from every earlier node to every intermediate node (14 edges for
4 nodes), and outputs the concatenation of its intermediate nodes. One architecture matrix
``alpha_normal`` is shared by all normal cells and one ``alpha_reduce`` by all reduction cells.

``space.edges: fixed`` is the edge-fixed space S1 of Amended-DARTS (Sec. 4.1.2): node ``i``
takes its inputs from node ``i - 1`` and from c_{k-2} only (8 edges for 4 nodes), so only the
ops are searched and derivation keeps both edges. ``space.dropout`` (before the classifier) and
``space.aux_weight`` (an auxiliary head after the second reduction cell, weighted in the loss)
bring the evaluation network's regularizers into search (Amended-DARTS' consistency options).
``space.op_set`` (``s1``..``s4``) searches one of RobustDARTS' reduced spaces
(:mod:`.op_sets`): S2-S4 set ``space.ops`` for every edge, S1 gives every edge its own op pair.
``space.checkpoint`` recomputes every mixed edge in the backward pass instead of keeping its
internals (:mod:`noisydarts.nn.recompute`: the same numbers; ``auto``: on a GPU only).

Derivation (:func:`derive`) keeps, per node, the two incoming edges whose best non-``none`` op
weight is largest, and on each edge that op. With PC-DARTS edge normalization the weight ranked
is ``W = softmax(alpha) * softmax(beta)`` (the release's ``genotype()``; the weighting's
``effective`` weights). A weighting that selects the architecture itself (SI-VDNAS:
:meth:`noisydarts.nn.mixed.Weighting.keep_masks`) gives a :class:`VariableGenotype` instead
(:func:`derive_variable`): every kept (op, edge) pair, any number per edge and per node.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...nn.recompute import check_checkpoint, recompute, resolve_checkpoint
from ...errors import UserError
from ...nn.heads import AuxiliaryHead
from ...nn.mixed import MixedEdge
from ...methods.parts import MethodParts
from ...methods.weightings import build_weighting
from ...nn.ops import NOISYDARTS_OPS, FactorizedReduce, ReLUConvBN, check_op_list
from ...nn.supernet import Supernet
from .genotype import Genotype, VariableGenotype
from .op_sets import check_op_set, edge_ops as op_set_edge_ops

DEFAULTS = {
    "channels": 16,
    "layers": 8,
    "nodes": 4,
    "stem_multiplier": 3,
    "ops": list(NOISYDARTS_OPS),
    "op_set": None,        # null (space.ops on every edge) | s1 | s2 | s3 | s4: RobustDARTS' spaces, replacing space.ops
    "edges": "dense",      # dense (every earlier node) | fixed (Amended-DARTS S1: node i-1 and c_{k-2})
    "dropout": 0.0,        # dropout before the classifier during search
    "aux_weight": 0.0,     # weight of an auxiliary head's loss (0 = no head; 0.4 in DARTS evaluation)
    "checkpoint": "auto",  # recompute each mixed edge in the backward pass (true | false | auto: on a GPU)
}


def dense_edges(nodes: int) -> list[tuple[int, int]]:
    """``(target, source)`` of every edge, node by node: node ``i + 2`` takes all of 0..i+1."""
    return [(i + 2, j) for i in range(nodes) for j in range(i + 2)]


def fixed_edges(nodes: int) -> list[tuple[int, int]]:
    """Amended-DARTS' edge-fixed cell: node ``t`` takes c_{k-2} (0) and the node before it."""
    return [(t, s) for t in range(2, nodes + 2) for s in (0, t - 1)]


EDGES = {"dense": dense_edges, "fixed": fixed_edges}


class SearchCell(nn.Module):
    def __init__(self, edges, C_pp, C_p, C, reduction, reduction_prev, make_edge, edge_ops=None):
        """``make_edge(op_names, C, stride)``; ``edge_ops``: each edge's op names (None: the
        supernet's op list on every edge)."""
        super().__init__()
        self.reduction = reduction
        self.edge_list = list(edges)
        self.num_nodes = max(t for t, _ in self.edge_list) - 1
        self.preprocess0 = FactorizedReduce(C_pp, C, affine=False) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        # Only edges leaving the cell inputs stride in a reduction cell.
        edge_ops = edge_ops if edge_ops is not None else [None] * len(self.edge_list)
        self.edges = nn.ModuleList(make_edge(names, C, 2 if reduction and s < 2 else 1)
                                   for names, (_, s) in zip(edge_ops, self.edge_list))

    def forward(self, s0, s1, weights, edge_weights=None, checkpoint: bool = False):
        """``weights``: the ``[edges, ops]`` op weights; ``edge_weights``: ``[edges]`` weights of
        whole edges (PC-DARTS edge normalization) or None. ``checkpoint``: recompute every mixed
        edge in the backward pass (:func:`noisydarts.nn.recompute.recompute`)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        rows = weights.unbind(0)
        scales = edge_weights.unbind(0) if edge_weights is not None else [None] * len(rows)
        node = None
        for k, (target, source) in enumerate(self.edge_list):
            if target == len(states) + 1:  # edges are ordered by target: the previous node is complete
                states.append(node)
                node = None
            edge = self.edges[k]
            y = recompute(edge, edge, states[source], rows[k], scales[k]) if checkpoint else edge(states[source], rows[k], scales[k])
            node = y if node is None else node + y
        states.append(node)
        return torch.cat(states[2:], dim=1)


class DartsSupernet(Supernet):
    kinds = ("normal", "reduce")

    def __init__(self, num_classes: int, channels: int = 16, layers: int = 8, nodes: int = 4,
                 stem_multiplier: int = 3, ops=NOISYDARTS_OPS, *, noise: nn.Module | None = None,
                 noise_on_reduction: bool = True, weighting: str = "softmax", partial_channels: int = 1,
                 edges=None, in_channels: int = 3, dropout: float = 0.0, aux_weight: float = 0.0,
                 checkpoint: bool = False, op_transforms=None, auxiliary_skip: nn.Module | None = None,
                 edge_ops: dict[str, list[list[str]]] | None = None):
        """``ops``: the op names of the architecture matrices' columns, on every edge; or, with
        ``edge_ops`` (``{kind: [op names of each edge]}``, RobustDARTS' S1), the columns' labels."""
        super().__init__()
        self.op_names = list(ops)
        self.edge_ops = edge_ops
        self.auxiliary_skip = auxiliary_skip  # DARTS-: owned here once, scheduled by set_epoch, read by every edge
        self.checkpoint = checkpoint
        self.nodes = nodes
        self.edge_list = list(edges) if edges is not None else dense_edges(nodes)
        if any(s >= t for t, s in self.edge_list) or [t for t, _ in self.edge_list] != sorted(t for t, _ in self.edge_list):
            raise ValueError("edges must be (target, source) pairs sorted by target, with source < target")
        self.noise = noise
        if edge_ops is not None and any(len(e) != len(self.edge_list) or {len(ops) for ops in e} != {len(self.op_names)}
                                        for e in edge_ops.values()):
            raise ValueError("edge_ops needs one op list per edge and cell type, each as long as ops")
        for kind in self.kinds:
            self.arch[f"alpha_{kind}"] = nn.Parameter(1e-3 * torch.randn(len(self.edge_list), len(self.op_names)))
        self.weighting = build_weighting(weighting, self.arch, self.kinds, [t for t, _ in self.edge_list])

        def transforms_for(stride):  # ``op_transforms(stride)`` (MethodParts') wins over noise/noise_on_reduction
            if op_transforms is not None:
                return op_transforms(stride)
            return {"skip_connect": noise} if noise is not None and (stride == 1 or noise_on_reduction) else None

        def make_edge(names, C, stride):
            return MixedEdge(names or self.op_names, C, stride, affine=False, bn_after_pool=True,
                             op_transforms=transforms_for(stride), partial_channels=partial_channels,
                             auxiliary_skip=auxiliary_skip)

        C_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = SearchCell(self.edge_list, C_pp, C_p, C_curr, reduction, reduction_prev, make_edge,
                              self.edge_op_names("reduce" if reduction else "normal") if edge_ops else None)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.num_nodes * C_curr
            if aux_weight and i == 2 * layers // 3:
                C_aux = C_p
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.classifier = nn.Linear(C_p, num_classes)
        self.aux_weight = aux_weight
        self.aux_head = AuxiliaryHead(C_aux, num_classes) if aux_weight else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)[0]

    def _forward(self, x: torch.Tensor):
        """``(logits, aux_logits or None)``; the auxiliary head runs only in training mode."""
        per_cell = self.training and self.weighting.per_cell  # an independent draw for every cell
        weights = None if per_cell else self.mixing_weights(x.shape[0])
        s0 = s1 = self.stem(x)
        aux = None
        checkpoint = self.checkpoint and torch.is_grad_enabled()
        for i, cell in enumerate(self.cells):
            kind = self._cell_kind(i, cell)
            cell_weights = self.mixing_weights(x.shape[0], (kind,))[kind] if per_cell else weights[kind]
            s0, s1 = s1, cell(s0, s1, *cell_weights, checkpoint=checkpoint)
            if self.aux_head is not None and self.training and i == 2 * len(self.cells) // 3:
                aux = self.aux_head(s1)
        return self.classifier(self.dropout(self.pool(s1).flatten(1))), aux

    def _cell_kind(self, index: int, cell) -> str:
        """The cell type (a key of ``self.arch``'s ``alpha_<kind>``) whose weights cell ``index`` uses."""
        return "reduce" if cell.reduction else "normal"

    def edge_op_names(self, kind: str) -> list[list[str]]:
        """Each edge's op names in cell type ``kind`` (the order of its alpha row)."""
        if self.edge_ops is not None:
            return [list(ops) for ops in self.edge_ops[kind]]
        return [list(self.op_names) for _ in self.edge_list]

    def arch_edges(self) -> dict[str, list[tuple[int, int]]]:
        """Every cell type has the same edges: nodes 0, 1 are the cell inputs c_{k-2}, c_{k-1}."""
        return {kind: list(self.edge_list) for kind in self.kinds}

    def training_loss(self, x: torch.Tensor, y: torch.Tensor):
        logits, aux = self._forward(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y)
        if aux is not None:
            loss = loss + self.aux_weight * F.cross_entropy(aux.float(), y)
        return loss, logits

    def genotype(self, derivation: str | None = None) -> Genotype | VariableGenotype:
        """The DARTS derivation, or the weighting's own selection (``derivation``: one of
        ``weighting.derivations``; None: its default) as a :class:`VariableGenotype`."""
        masks = self.keep_masks(derivation)
        if masks is not None:
            return derive_variable(masks["normal"], masks["reduce"], self.op_names, self.edge_list, self.edge_ops)
        w = self.arch_weights()
        return derive(w["normal"], w["reduce"], self.op_names, self.edge_list, self.edge_ops)

    def epoch_metrics(self) -> dict:
        """The weighting's numbers and, where it offers more than one derivation, the genotypes
        of the others (SI-VDNAS: ``genotype_deterministic`` next to the sampled one)."""
        out = super().epoch_metrics()
        for derivation in self.weighting.derivations[1:]:
            out[f"genotype_{derivation}"] = str(self.genotype(derivation))
        return out


def _per_edge(op_names, num_edges: int) -> list[list[str]]:
    """``op_names`` as one op list per edge: a flat list is every edge's."""
    op_names = list(op_names)
    if op_names and isinstance(op_names[0], (list, tuple)):
        return [list(ops) for ops in op_names]
    return [op_names] * num_edges


def _derive_cell(weights: torch.Tensor, op_names, edge_list, keep: int = 2) -> list[tuple[str, int]]:
    """``op_names``: the ops of every edge, or a list of each edge's ops (RobustDARTS' S1)."""
    weights = torch.as_tensor(weights, dtype=torch.float64)
    names = _per_edge(op_names, len(edge_list))
    never = torch.tensor([[op == "none" for op in ops] for ops in names], dtype=torch.bool)
    if never.any():
        weights = weights.masked_fill(never, -1.0)  # never chosen, never counts for an edge's rank
    best_w, best_op = weights.max(dim=1)
    gene = []
    for target in sorted({t for t, _ in edge_list}):
        incoming = [k for k, (t, _) in enumerate(edge_list) if t == target]
        # Stable sort: ties go to the earlier edge, as in the DARTS release.
        ranked = sorted(incoming, key=lambda k: -float(best_w[k]))[:keep]
        gene += [(names[k][int(best_op[k])], edge_list[k][1]) for k in ranked]
    return gene


def derive(normal: torch.Tensor, reduce: torch.Tensor, op_names, edge_list=None, edge_ops=None) -> Genotype:
    """Discretize a DARTS cell (Sec. 2.4 of DARTS): a pure function of the weight matrices.

    Per node, keep the 2 incoming edges with the largest non-``none`` weight and on each the
    non-``none`` op with the largest weight. ``none`` still counts in the softmax itself.
    ``edge_ops``: ``{kind: [ops of each edge]}`` where edges differ (RobustDARTS' S1), else None.
    """
    op_names = list(op_names)
    if set(op_names) <= {"none"}:
        raise UserError("the op set has no operation besides 'none'")
    edge_list = list(edge_list) if edge_list is not None else dense_edges(_nodes_from_edges(len(normal)))
    nodes = len({t for t, _ in edge_list})
    concat = list(range(2, 2 + nodes))
    ops = edge_ops or {"normal": op_names, "reduce": op_names}
    return Genotype(normal=_derive_cell(normal, ops["normal"], edge_list), normal_concat=concat,
                    reduce=_derive_cell(reduce, ops["reduce"], edge_list), reduce_concat=concat)


def derive_variable(normal: torch.Tensor, reduce: torch.Tensor, op_names, edge_list, edge_ops=None) -> VariableGenotype:
    """A :class:`VariableGenotype` from bool ``[edges, ops]`` keep masks (a pure function): node
    by node, every kept ``(op, input)`` pair, in edge order and then op order. ``edge_ops`` as
    in :func:`derive`."""
    ops = edge_ops or {"normal": list(op_names), "reduce": list(op_names)}
    targets = sorted({t for t, _ in edge_list})

    def cell(mask, kind):
        mask = torch.as_tensor(mask).bool()
        names = _per_edge(ops[kind], len(edge_list))
        return [[(names[k][o], source) for k, (t, source) in enumerate(edge_list) if t == target
                 for o in range(len(names[k])) if mask[k, o] and names[k][o] != "none"] for target in targets]

    return VariableGenotype(cell(normal, "normal"), targets, cell(reduce, "reduce"), targets)


def _nodes_from_edges(num_edges: int) -> int:
    nodes, total = 0, 0
    while total < num_edges:
        total += nodes + 2
        nodes += 1
    if total != num_edges:
        raise UserError(f"{num_edges} edges do not form a dense DARTS cell")
    return nodes


def build(cfg: dict, parts: MethodParts, num_classes: int, in_channels: int = 3) -> DartsSupernet:
    """Build the supernet from a resolved config's ``space`` section and the method's parts."""
    space = cfg["space"]
    edges = EDGES[space["edges"]](space["nodes"])
    edge_ops = op_set_edge_ops(space.get("op_set"), len(edges))
    return DartsSupernet(num_classes, space["channels"], space["layers"], space["nodes"], space["stem_multiplier"],
                         space["ops"], noise=parts.skip_transform, noise_on_reduction=parts.skip_transform_on_reduction,
                         weighting=parts.weighting, partial_channels=parts.partial_channels, in_channels=in_channels,
                         edges=edges, dropout=space["dropout"],
                         aux_weight=space["aux_weight"], checkpoint=resolve_checkpoint(space["checkpoint"], cfg.get("device")),
                         op_transforms=parts.op_transforms, auxiliary_skip=parts.auxiliary_skip, edge_ops=edge_ops)


def skip_op_problem(space: dict) -> str | None:
    """The skip transforms act on ``skip_connect`` by name: RobustDARTS' S4 (or a ``space.ops``
    list) without it would leave them idle."""
    if "skip_connect" in space["ops"] or space.get("op_set") == "s1":  # S1's pairs hold it on 18 edges
        return None
    where = f"space.op_set={space['op_set']}" if space.get("op_set") else "space.ops"
    return f"it acts on skip_connect, which {where} does not have"


def validate(cfg: dict) -> None:
    space = cfg["space"]
    check_op_set(space)
    if space.get("op_set") != "s1":  # S1's columns are labels; its ops are checked in op_sets
        check_op_list(space["ops"])
    check_checkpoint(space["checkpoint"])
    if space["edges"] not in EDGES:
        raise UserError(f"space.edges must be one of {', '.join(EDGES)}, got {space['edges']!r}")
    if not 0 <= space["dropout"] < 1 or space["aux_weight"] < 0:
        raise UserError("space.dropout must be in [0, 1) and space.aux_weight >= 0")
    for key in ("channels", "layers", "nodes", "stem_multiplier"):
        if space[key] < 1:
            raise UserError(f"space.{key} must be at least 1, got {space[key]}")
    if space["channels"] % 2:
        raise UserError(f"space.channels must be even, got {space['channels']}")


def partial_channels_problem(space: dict, k: int) -> str | None:
    """An edge's ops get ``C / K`` channels (``C`` the cell's: the stem's ``channels``, doubled at
    each reduction). A stride-2 skip (factorized reduce) halves its ``2C / K`` channels, which are
    even whenever ``K`` divides ``channels``."""
    if space["channels"] % k:
        return f"space.channels={space['channels']} must be a multiple of edge.partial_channels"
    return None
