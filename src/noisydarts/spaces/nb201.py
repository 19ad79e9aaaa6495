"""The NAS-Bench-201 cell search space (Dong & Yang, 2020), as searched by NoisyDARTS.

Macro skeleton (the benchmark's, for search and for the final network alike): a 3x3 stem conv
to ``C`` channels + BN; three stages of ``N`` cells at ``C``, ``2C`` and ``4C`` channels, joined
by ResNet basic-block reductions; BN + ReLU + global average pooling + a linear classifier.

A cell has 4 nodes: node 0 is the cell input, node ``i`` sums an edge from every earlier node
(6 edges, in :data:`noisydarts.nb201.NB201_EDGES` order), the cell output is node 3. During
search every edge is a mixed op over none, skip_connect, nor_conv_1x1, nor_conv_3x3 and
avg_pool_3x3; the cell's BNs have no affine parameters and keep no running statistics (as in the
benchmark's DARTS baseline). One ``alpha_cell`` [6, 5] is shared by all cells.

Derivation (:func:`derive`) is the benchmark's: per edge, the argmax over all ops, ``none``
included, so every derived cell is one of the 15,625 rows of the ground-truth table and its
accuracies are known instantly (:meth:`NB201Supernet.genotype_metrics`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import nb201 as bench
from ..errors import UserError
from ..mixed import WEIGHTINGS, MixedEdge
from ..nb201 import NB201_EDGES, NB201_OPS, NB201Arch
from ..noise import build_skip_transform
from ..ops import ReLUConvBN, build_op
from ..supernet import Supernet

DEFAULTS = {
    "channels": 16,
    "cells_per_stage": 5,
    "ops": list(NB201_OPS),
}


class ResNetReduction(nn.Module):
    """The benchmark's reduction block between stages: a ResNet basic block at stride 2,
    ``ReLU-conv3x3/2-BN -> ReLU-conv3x3-BN`` plus an ``AvgPool2d(2) -> conv1x1`` shortcut."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1, affine=True)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine=True)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class _Skeleton(nn.Module):
    """Stem, 3 stages of cells joined by reductions, BN-ReLU-pool-linear head. ``make_cell(C)``
    builds one cell at ``C`` channels; ``forward_cell(cell, x)`` runs it."""

    def _build(self, num_classes: int, channels: int, cells_per_stage: int, in_channels: int, make_cell):
        C = channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers = []
        for stage in range(3):
            if stage:
                layers.append(ResNetReduction(C, 2 * C))
                C *= 2
            layers += [make_cell(C) for _ in range(cells_per_stage)]
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.BatchNorm2d(C), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(C, num_classes)

    def _run(self, x: torch.Tensor, forward_cell) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x) if isinstance(layer, ResNetReduction) else forward_cell(layer, x)
        return self.classifier(self.head(x))


def _cell_forward(edges: nn.ModuleList, x: torch.Tensor, edge_args) -> torch.Tensor:
    """Node i = sum of the edges from every earlier node; the cell output is the last node."""
    nodes = [x]
    k = 0
    for target in range(1, 4):
        out = None
        for source in range(target):
            y = edge_args(edges[k], nodes[source], k)
            out = y if out is None else out + y
            k += 1
        nodes.append(out)
    return nodes[-1]


class NB201Supernet(Supernet, _Skeleton):
    kinds = ("cell",)

    def __init__(self, num_classes: int, channels: int = 16, cells_per_stage: int = 5, ops=NB201_OPS, *,
                 noise: nn.Module | None = None, weighting: str = "softmax", partial_channels: int = 1,
                 in_channels: int = 3):
        super().__init__()
        self.op_names = list(ops)
        self.noise = noise
        self.arch["alpha_cell"] = nn.Parameter(1e-3 * torch.randn(len(NB201_EDGES), len(self.op_names)))
        self.weighting = WEIGHTINGS[weighting](self.arch, self.kinds, [t for t, _ in NB201_EDGES])

        def make_cell(C):
            return nn.ModuleList(
                MixedEdge(self.op_names, C, 1, affine=False, track_stats=False, bn_after_pool=False,
                          op_transforms={"skip_connect": noise} if noise is not None else None,
                          partial_channels=partial_channels)
                for _ in NB201_EDGES)

        self._build(num_classes, channels, cells_per_stage, in_channels, make_cell)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.weighting("cell").unbind(0)
        return self._run(x, lambda cell, h: _cell_forward(cell, h, lambda edge, s, k: edge(s, rows[k])))

    def genotype(self) -> NB201Arch:
        return derive(self.arch_weights()["cell"], self.op_names)

    def genotype_metrics(self, arch: NB201Arch) -> dict:
        r = bench.lookup(arch)
        return {"nb201_index": r.index, "cifar10_test": r.cifar10_test, "cifar100_test": r.cifar100_test,
                "imagenet16_test": r.imagenet16_test, "skip_count": arch.count("skip_connect")}


class NB201Network(_Skeleton):
    """The stand-alone NB201 network of one cell (affine BN with running statistics), as the
    benchmark trains it: ``NB201Network("|nor_conv_3x3~0|+...", 10)``."""

    def __init__(self, arch: str | NB201Arch, num_classes: int, channels: int = 16, cells_per_stage: int = 5,
                 in_channels: int = 3):
        super().__init__()
        self.arch = arch if isinstance(arch, NB201Arch) else NB201Arch.parse(arch)

        def make_cell(C):
            return nn.ModuleList(build_op(op, C, 1, affine=True, track_stats=True) for op in self.arch.ops)

        self._build(num_classes, channels, cells_per_stage, in_channels, make_cell)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, lambda cell, h: _cell_forward(cell, h, lambda edge, s, k: edge(s)))


def derive(weights: torch.Tensor, op_names) -> NB201Arch:
    """Discretize (NAS-Bench-201's DARTS baseline): on each of the 6 edges keep the op with the
    largest weight, ``none`` included. Ties go to the earlier op name. A pure function."""
    weights = torch.as_tensor(weights, dtype=torch.float64)
    op_names = list(op_names)
    if weights.shape != (len(NB201_EDGES), len(op_names)):
        raise UserError(f"NB201 weights must be [{len(NB201_EDGES)}, {len(op_names)}], got {list(weights.shape)}")
    return NB201Arch(tuple(op_names[int(k)] for k in weights.argmax(dim=1)))


def build(cfg: dict, num_classes: int, in_channels: int = 3) -> NB201Supernet:
    """Build the supernet from a resolved config (sections ``space``, ``noise`` and ``edge``)."""
    space, edge = cfg["space"], cfg["edge"]
    return NB201Supernet(num_classes, space["channels"], space["cells_per_stage"], space["ops"],
                         noise=build_skip_transform(cfg["noise"]), weighting=edge["weighting"],
                         partial_channels=edge["partial_channels"], in_channels=in_channels)


def validate(cfg: dict) -> None:
    from ..ops import check_op_list

    space = cfg["space"]
    check_op_list(space["ops"], NB201_OPS)
    for key in ("channels", "cells_per_stage"):
        if space[key] < 1:
            raise UserError(f"space.{key} must be at least 1, got {space[key]}")
    if space["channels"] % cfg["edge"]["partial_channels"]:
        raise UserError(f"space.channels={space['channels']} must be divisible by edge.partial_channels")
