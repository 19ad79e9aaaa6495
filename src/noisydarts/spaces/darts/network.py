"""Evaluation networks of the DARTS cell space: a genotype trained from scratch.

The discrete cells of a genotype, stacked into the networks the papers train: the CIFAR network
(NoisyDARTS Sec. 4.2 / DARTS Sec. 3.2: C=36, 20 cells, auxiliary head, drop-path) and the
ImageNet network of the mobile setting (C=48, 14 cells, three stride-2 stem convs). All BNs are
affine; ops come from the same registry as the search cells (``ops.build_op``), so their
parameters are exactly the DARTS release's.

A network asks its genotype for one gene per cell (``genotype.cell_genes(layers)``: the nodes'
``(op, input)`` lists, the concat list and whether the cell reduces), so the same networks serve
the DARTS genotype (one normal and one reduction gene), Amended-DARTS S2 (a gene per cell) and
variable topologies (any number of inputs per node). Forward convention: in training mode the
networks return ``(logits, aux_logits)`` (``aux_logits`` is None without an auxiliary head); in
eval mode ``logits`` only (what evaluation, TorchScript and ONNX export see).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import UserError
from ...nn.ops import FactorizedReduce, ReLUConvBN, build_op


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of a branch with probability ``drop_prob`` and rescale the rest
    (FractalNet drop-path as used by DARTS). Draws from the global RNG, so a run with its RNG
    state restored (checkpoints) drops the same paths."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells: at 1/3 and 2/3 of the depth (DARTS)."""
    return layers // 3, 2 * layers // 3


class Cell(nn.Module):
    """One discrete cell: node ``i`` sums its ops applied to earlier nodes (``nodes[i]`` is a list
    of ``(op, input)``; inputs 0 and 1 are the cell inputs c_{k-2}, c_{k-1}); the output
    concatenates the ``concat`` nodes."""

    def __init__(self, nodes, concat, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        self.concat = [int(i) for i in concat]
        pairs = [(op, int(j)) for node in nodes for op, j in node]
        self.op_names = [op for op, _ in pairs]
        self.inputs = [j for _, j in pairs]
        self.node_of = [i for i, node in enumerate(nodes) for _ in node]  # which node each op feeds
        self.steps = len(nodes)
        # Only edges leaving the cell inputs stride in a reduction cell.
        self.ops = nn.ModuleList(build_op(op, C, 2 if reduction and j < 2 else 1, affine=True) for op, j in pairs)
        # DARTS exempts identities from drop-path (a dropped identity would just be a missing skip).
        self.droppable = [not isinstance(op, nn.Identity) for op in self.ops]
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        nodes: list = [None] * self.steps
        for k, op in enumerate(self.ops):
            i = self.node_of[k]
            while len(states) < 2 + i:  # ops are listed node by node: the earlier nodes are complete
                states.append(nodes[len(states) - 2])
            h = op(states[self.inputs[k]])
            if self.training and drop_prob > 0 and self.droppable[k]:
                h = drop_path(h, drop_prob)
            nodes[i] = h if nodes[i] is None else nodes[i] + h
        states += nodes[len(states) - 2:]
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS' auxiliary classifier on the 8x8 maps after the second reduction (32 px input).

    At other resolutions (a search on a folder at 16 or 96 px hands its resolution on to
    training) the maps are pooled to the same 2x2 by adaptive averaging, so the head keeps its
    parameters and works at any size; at 32 px it is DARTS' 5x5 window, stride 3, exactly."""

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
        x = self.features[0](x)
        x = self.features[1](x) if x.shape[-2:] == (8, 8) else F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features[2:](x).flatten(1))


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
    """Shared body: a stack of cells, an optional auxiliary head after the second reduction,
    global pooling and a linear classifier."""

    aux_head_type: type = AuxiliaryHeadCIFAR

    def _build_cells(self, genotype, num_classes: int, C_pp: int, C_p: int, C: int, layers: int,
                     reduction_prev: bool, auxiliary: bool) -> None:
        if layers < 3:
            raise UserError(f"an evaluation network needs at least 3 layers (two are reductions), got {layers}")
        self.genotype = genotype
        self.cells = nn.ModuleList()
        genes = genotype.cell_genes(layers)
        # The auxiliary head sits after the last reduction cell (the second, in DARTS).
        self.aux_index = max((i for i, (_, _, reduction) in enumerate(genes) if reduction), default=2 * layers // 3)
        C_aux = None
        for i, (nodes, concat, reduction) in enumerate(genes):
            if reduction:
                C *= 2
            cell = Cell(nodes, concat, C_pp, C_p, C, reduction, reduction_prev)
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

    def __init__(self, genotype, num_classes: int, channels: int = 36, layers: int = 20,
                 auxiliary: bool = True, drop_path_prob: float = 0.2, in_channels: int = 3):
        super().__init__()
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

    def __init__(self, genotype, num_classes: int = 1000, channels: int = 48, layers: int = 14,
                 auxiliary: bool = True, drop_path_prob: float = 0.0, in_channels: int = 3):
        super().__init__()
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


#: family -> network class
NETWORKS = {"cifar": NetworkCIFAR, "imagenet": NetworkImageNet}
