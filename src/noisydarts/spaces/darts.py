"""The DARTS cell search space (Liu et al., 2019), as searched by NoisyDARTS.

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

Derivation (:func:`derive`) keeps, per node, the two incoming edges whose best non-``none`` op
weight is largest, and on each edge that op.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from ..genotype import Genotype
from ..heads import AuxiliaryHead
from ..mixed import WEIGHTINGS, MixedEdge
from ..noise import build_skip_transform
from ..ops import DARTS_OPS, NOISYDARTS_OPS, FactorizedReduce, ReLUConvBN
from ..supernet import Supernet

DEFAULTS = {
    "channels": 16,
    "layers": 8,
    "nodes": 4,
    "stem_multiplier": 3,
    "ops": list(NOISYDARTS_OPS),
    "edges": "dense",      # dense (every earlier node) | fixed (Amended-DARTS S1: node i-1 and c_{k-2})
    "dropout": 0.0,        # dropout before the classifier during search
    "aux_weight": 0.0,     # weight of an auxiliary head's loss (0 = no head; 0.4 in DARTS evaluation)
}


def dense_edges(nodes: int) -> list[tuple[int, int]]:
    """``(target, source)`` of every edge, node by node: node ``i + 2`` takes all of 0..i+1."""
    return [(i + 2, j) for i in range(nodes) for j in range(i + 2)]


def fixed_edges(nodes: int) -> list[tuple[int, int]]:
    """Amended-DARTS' edge-fixed cell: node ``t`` takes c_{k-2} (0) and the node before it."""
    return [(t, s) for t in range(2, nodes + 2) for s in (0, t - 1)]


EDGES = {"dense": dense_edges, "fixed": fixed_edges}


class SearchCell(nn.Module):
    def __init__(self, edges, C_pp, C_p, C, reduction, reduction_prev, make_edge):
        super().__init__()
        self.reduction = reduction
        self.edge_list = list(edges)
        self.num_nodes = max(t for t, _ in self.edge_list) - 1
        self.preprocess0 = FactorizedReduce(C_pp, C, affine=False) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        # Only edges leaving the cell inputs stride in a reduction cell.
        self.edges = nn.ModuleList(make_edge(C, 2 if reduction and s < 2 else 1) for _, s in self.edge_list)

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        rows = weights.unbind(0)
        node = None
        for k, (target, source) in enumerate(self.edge_list):
            if target == len(states) + 1:  # edges are ordered by target: the previous node is complete
                states.append(node)
                node = None
            y = self.edges[k](states[source], rows[k])
            node = y if node is None else node + y
        states.append(node)
        return torch.cat(states[2:], dim=1)


class DartsSupernet(Supernet):
    kinds = ("normal", "reduce")

    def __init__(self, num_classes: int, channels: int = 16, layers: int = 8, nodes: int = 4,
                 stem_multiplier: int = 3, ops=NOISYDARTS_OPS, *, noise: nn.Module | None = None,
                 noise_on_reduction: bool = True, weighting: str = "softmax", partial_channels: int = 1,
                 edges=None, in_channels: int = 3, dropout: float = 0.0, aux_weight: float = 0.0):
        super().__init__()
        self.op_names = list(ops)
        self.nodes = nodes
        self.edge_list = list(edges) if edges is not None else dense_edges(nodes)
        if any(s >= t for t, s in self.edge_list) or [t for t, _ in self.edge_list] != sorted(t for t, _ in self.edge_list):
            raise ValueError("edges must be (target, source) pairs sorted by target, with source < target")
        self.noise = noise
        for kind in self.kinds:
            self.arch[f"alpha_{kind}"] = nn.Parameter(1e-3 * torch.randn(len(self.edge_list), len(self.op_names)))
        self.weighting = WEIGHTINGS[weighting](self.arch, self.kinds, [t for t, _ in self.edge_list])

        def make_edge(C, stride):
            with_noise = noise is not None and (stride == 1 or noise_on_reduction)
            return MixedEdge(self.op_names, C, stride, affine=False, bn_after_pool=True,
                             op_transforms={"skip_connect": noise} if with_noise else None,
                             partial_channels=partial_channels)

        C_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell = SearchCell(self.edge_list, C_pp, C_p, C_curr, reduction, reduction_prev, make_edge)
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
        weights = {kind: self.weighting(kind) for kind in self.kinds}
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self._cell_weights(weights, i, cell))
            if self.aux_head is not None and self.training and i == 2 * len(self.cells) // 3:
                aux = self.aux_head(s1)
        return self.classifier(self.dropout(self.pool(s1).flatten(1))), aux

    def _cell_weights(self, weights: dict, index: int, cell) -> torch.Tensor:
        return weights["reduce" if cell.reduction else "normal"]

    def training_loss(self, x: torch.Tensor, y: torch.Tensor):
        logits, aux = self._forward(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y)
        if aux is not None:
            loss = loss + self.aux_weight * F.cross_entropy(aux.float(), y)
        return loss, logits

    def genotype(self) -> Genotype:
        w = self.arch_weights()
        return derive(w["normal"], w["reduce"], self.op_names, self.edge_list)

    def genotype_metrics(self, genotype: Genotype) -> dict:
        return {"skip_normal": genotype.count("skip_connect", "normal"),
                "skip_reduce": genotype.count("skip_connect", "reduce")}


def _derive_cell(weights: torch.Tensor, op_names, edge_list, keep: int = 2) -> list[tuple[str, int]]:
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if "none" in op_names:
        weights = weights.clone()
        weights[:, op_names.index("none")] = -1.0  # never chosen, never counts for an edge's rank
    best_w, best_op = weights.max(dim=1)
    gene = []
    for target in sorted({t for t, _ in edge_list}):
        incoming = [k for k, (t, _) in enumerate(edge_list) if t == target]
        # Stable sort: ties go to the earlier edge, as in the DARTS release.
        ranked = sorted(incoming, key=lambda k: -float(best_w[k]))[:keep]
        gene += [(op_names[int(best_op[k])], edge_list[k][1]) for k in ranked]
    return gene


def derive(normal: torch.Tensor, reduce: torch.Tensor, op_names, edge_list=None) -> Genotype:
    """Discretize a DARTS cell (Sec. 2.4 of DARTS): a pure function of the weight matrices.

    Per node, keep the 2 incoming edges with the largest non-``none`` weight and on each the
    non-``none`` op with the largest weight. ``none`` still counts in the softmax itself.
    """
    op_names = list(op_names)
    if set(op_names) <= {"none"}:
        raise UserError("the op set has no operation besides 'none'")
    edge_list = list(edge_list) if edge_list is not None else dense_edges(_nodes_from_edges(len(normal)))
    nodes = len({t for t, _ in edge_list})
    concat = list(range(2, 2 + nodes))
    return Genotype(normal=_derive_cell(normal, op_names, edge_list), normal_concat=concat,
                    reduce=_derive_cell(reduce, op_names, edge_list), reduce_concat=concat)


def _nodes_from_edges(num_edges: int) -> int:
    nodes, total = 0, 0
    while total < num_edges:
        total += nodes + 2
        nodes += 1
    if total != num_edges:
        raise UserError(f"{num_edges} edges do not form a dense DARTS cell")
    return nodes


def build(cfg: dict, num_classes: int, in_channels: int = 3) -> DartsSupernet:
    """Build the supernet from a resolved config (sections ``space``, ``noise`` and ``edge``)."""
    space, edge = cfg["space"], cfg["edge"]
    return DartsSupernet(num_classes, space["channels"], space["layers"], space["nodes"], space["stem_multiplier"],
                         space["ops"], noise=build_skip_transform(cfg["noise"]),
                         noise_on_reduction=cfg["noise"]["reduction_skips"], weighting=edge["weighting"],
                         partial_channels=edge["partial_channels"], in_channels=in_channels,
                         edges=EDGES[space["edges"]](space["nodes"]), dropout=space["dropout"],
                         aux_weight=space["aux_weight"])


def validate(cfg: dict) -> None:
    from ..ops import check_op_list

    space = cfg["space"]
    check_op_list(space["ops"])
    if space["edges"] not in EDGES:
        raise UserError(f"space.edges must be one of {', '.join(EDGES)}, got {space['edges']!r}")
    if not 0 <= space["dropout"] < 1 or space["aux_weight"] < 0:
        raise UserError("space.dropout must be in [0, 1) and space.aux_weight >= 0")
    for key in ("channels", "layers", "nodes", "stem_multiplier"):
        if space[key] < 1:
            raise UserError(f"space.{key} must be at least 1, got {space[key]}")
    if space["channels"] % (2 * cfg["edge"]["partial_channels"]):
        raise UserError(f"space.channels={space['channels']} must be even and divisible by edge.partial_channels")


# =============================================================================================
# Evaluation networks: a genotype trained from scratch (the DARTS evaluation protocol)
# =============================================================================================
#
# The discrete cell of a genotype, stacked into the networks the papers train: the CIFAR network
# (NoisyDARTS Sec. 4.2 / DARTS Sec. 3.2: C=36, 20 cells, auxiliary head, drop-path) and the
# ImageNet network of the mobile setting (C=48, 14 cells, three stride-2 stem convs). All BNs are
# affine; ops come from the same registry as the search cells (``ops.build_op``), so their
# parameters are exactly the DARTS release's. Forward convention: in training mode the networks
# return ``(logits, aux_logits)`` (``aux_logits`` is None without an auxiliary head); in eval
# mode they return ``logits`` only (what evaluation, TorchScript and ONNX export see).


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of a branch with probability ``drop_prob`` and rescale the rest
    (FractalNet drop-path as used by DARTS). Draws from the global RNG, so a run with its RNG
    state restored (checkpoints) drops the same paths."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class Cell(nn.Module):
    """One discrete DARTS cell compiled from a genotype: each intermediate node sums two ops
    applied to earlier nodes; the output concatenates the ``concat`` nodes."""

    def __init__(self, genotype: Genotype, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self._compile(C, edges, reduction)

    def _compile(self, C: int, edges, reduction: bool) -> None:
        from ..ops import build_op

        self.op_names = [op for op, _ in edges]
        self.inputs = [j for _, j in edges]
        self.steps = len(edges) // 2
        # Only edges leaving the cell inputs stride in a reduction cell.
        self.ops = nn.ModuleList(build_op(op, C, 2 if reduction and j < 2 else 1, affine=True) for op, j in edges)
        # DARTS exempts identities from drop-path (a dropped identity would just be a missing skip).
        self.droppable = [not isinstance(op, nn.Identity) for op in self.ops]
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            node = None
            for k in (2 * i, 2 * i + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.training and drop_prob > 0 and self.droppable[k]:
                    h = drop_path(h, drop_prob)
                node = h if node is None else node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS' auxiliary classifier on the 8x8 maps after the second reduction."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS' ImageNet auxiliary classifier on the 14x14 maps (no BN after the 768 conv, as in
    the DARTS release's experiments)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class _EvalNetwork(nn.Module):
    """Shared body: a stack of cells (reductions at 1/3 and 2/3 of the depth), optional
    auxiliary head after the second reduction, global pooling and a linear classifier."""

    aux_head_type: type = AuxiliaryHeadCIFAR

    def _build_cells(self, genotype: Genotype, num_classes: int, C_pp: int, C_p: int, C: int, layers: int,
                     reduction_prev: bool, auxiliary: bool) -> None:
        self.genotype = genotype
        self.cells = nn.ModuleList()
        self.aux_index = 2 * layers // 3
        C_aux = None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C *= 2
            cell = Cell(genotype, C_pp, C_p, C, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C
            if i == self.aux_index:
                C_aux = C_p
        self.auxiliary_head = self.aux_head_type(C_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)
        self.num_classes = num_classes

    def _cells_forward(self, s0: torch.Tensor, s1: torch.Tensor):
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return (logits, aux_logits) if self.training else logits


class NetworkCIFAR(_EvalNetwork):
    """The CIFAR evaluation network of DARTS: 3x3 stem conv to 3C + BN, ``layers`` cells."""

    def __init__(self, genotype: Genotype, num_classes: int, channels: int = 36, layers: int = 20,
                 auxiliary: bool = True, drop_path_prob: float = 0.2, in_channels: int = 3):
        super().__init__()
        if layers < 3:
            raise UserError(f"an evaluation network needs at least 3 layers (two are reductions), got {layers}")
        self.drop_path_prob = drop_path_prob
        C_stem = 3 * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        self._build_cells(genotype, num_classes, C_stem, C_stem, channels, layers, False, auxiliary)

    def forward(self, x: torch.Tensor):
        s = self.stem(x)
        return self._cells_forward(s, s)


class NetworkImageNet(_EvalNetwork):
    """The ImageNet network of the mobile setting (DARTS Sec. 3.3): three stride-2 3x3 stem
    convs (224 -> 28), ``layers`` cells, no drop-path by default."""

    aux_head_type = AuxiliaryHeadImageNet

    def __init__(self, genotype: Genotype, num_classes: int = 1000, channels: int = 48, layers: int = 14,
                 auxiliary: bool = True, drop_path_prob: float = 0.0, in_channels: int = 3):
        super().__init__()
        if layers < 3:
            raise UserError(f"an evaluation network needs at least 3 layers (two are reductions), got {layers}")
        self.drop_path_prob = drop_path_prob
        C = channels
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(C))
        self._build_cells(genotype, num_classes, C, C, C, layers, True, auxiliary)

    def forward(self, x: torch.Tensor):
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        return self._cells_forward(s0, s1)
