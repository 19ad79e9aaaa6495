"""The NAS-Bench-201 cell search space (Dong & Yang, 2020), as searched by NoisyDARTS.

Macro skeleton (the benchmark's, for search and for the final network alike): a 3x3 stem conv
to ``C`` channels + BN; three stages of ``N`` cells at ``C``, ``2C`` and ``4C`` channels, joined
by ResNet basic-block reductions; BN + ReLU + global average pooling + a linear classifier.

A cell has 4 nodes: node 0 is the cell input, node ``i`` sums an edge from every earlier node
(6 edges, in :data:`noisydarts.benchmark.nb201.NB201_EDGES` order), the cell output is node 3. During
search every edge is a mixed op over none, skip_connect, nor_conv_1x1, nor_conv_3x3 and
avg_pool_3x3; the cell's BNs have no affine parameters and keep no running statistics (as in the
benchmark's DARTS baseline). One ``alpha_cell`` [6, 5] is shared by all cells.
``space.checkpoint`` recomputes every mixed edge in the backward pass instead of keeping its
internals (:mod:`noisydarts.nn.recompute`: the same numbers; ``auto``: on a GPU only).

Derivation (:func:`derive`) is the benchmark's: per edge, the argmax over all ops, ``none``
included, so every derived cell is one of the 15,625 rows of the ground-truth table and its
accuracies are known instantly (:meth:`NB201Space.genotype_metrics`).

Training a found cell (:meth:`NB201Space.recipe`) follows the benchmark's own protocol (Dong &
Yang, NAS-Bench-201, ICLR 2020, Sec. 2.3 "training hyperparameters"): 200 epochs, batch 256, SGD
with Nesterov momentum 0.9, lr 0.1 cosine-annealed to 0, weight decay 5e-4, random crop (padding
4; 2 at 16x16) and flip, no auxiliary head, drop-path or cutout. The network is the benchmark's
(C=16, N=5), so its parameter count equals the table's ``params_m``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ...benchmark import nb201 as bench
from ...nn.recompute import check_checkpoint, recompute, resolve_checkpoint
from ...errors import UserError
from ...nn.mixed import MixedEdge
from ...methods.parts import MethodParts, Support
from ...methods.weightings import build_weighting
from ...benchmark.nb201 import NB201_EDGES, NB201_OPS, NB201Arch
from ...nn.ops import ReLUConvBN, build_op, check_op_list
from ...nn.supernet import Supernet
from ..base import CellGraph, Space

DEFAULTS = {
    "channels": 16,
    "cells_per_stage": 5,
    "ops": list(NB201_OPS),
    "checkpoint": "auto",  # recompute each mixed edge in the backward pass (true | false | auto: on a GPU)
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
                 in_channels: int = 3, checkpoint: bool = False, auxiliary_skip: nn.Module | None = None):
        super().__init__()
        self.op_names = list(ops)
        self.auxiliary_skip = auxiliary_skip  # DARTS-: owned here once, scheduled by set_epoch, read by every edge
        self.checkpoint = checkpoint
        self.noise = noise
        self.arch["alpha_cell"] = nn.Parameter(1e-3 * torch.randn(len(NB201_EDGES), len(self.op_names)))
        self.weighting = build_weighting(weighting, self.arch, self.kinds, [t for t, _ in NB201_EDGES])

        def make_cell(C):
            return nn.ModuleList(
                MixedEdge(self.op_names, C, 1, affine=False, track_stats=False, bn_after_pool=False,
                          op_transforms={"skip_connect": noise} if noise is not None else None,
                          partial_channels=partial_channels, auxiliary_skip=auxiliary_skip)
                for _ in NB201_EDGES)

        self._build(num_classes, channels, cells_per_stage, in_channels, make_cell)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def draw():  # the rows of the cell's op weights and edge weights (None: no edge weights)
            op_weights, edge_weights = self.mixing_weights(x.shape[0])["cell"]
            rows = op_weights.unbind(0)
            return rows, edge_weights.unbind(0) if edge_weights is not None else [None] * len(rows)

        per_cell = self.training and self.weighting.per_cell  # an independent draw for every cell
        shared = None if per_cell else draw()
        recomputed = self.checkpoint and torch.is_grad_enabled()  # mixed edges recomputed in the backward pass

        def forward_cell(cell, h):
            rows, scales = draw() if per_cell else shared
            if recomputed:
                return _cell_forward(cell, h, lambda edge, s, k: recompute(edge, edge, s, rows[k], scales[k]))
            return _cell_forward(cell, h, lambda edge, s, k: edge(s, rows[k], scales[k]))

        return self._run(x, forward_cell)

    def arch_edges(self) -> dict[str, list[tuple[int, int]]]:
        """Node 0 is the cell input, node 3 its output."""
        return {"cell": list(NB201_EDGES)}

    def genotype(self) -> NB201Arch:
        # The weighting's scores: the effective weights (DARTS), SI-VDNAS' keep probabilities.
        return derive(self.selection_scores()["cell"], self.op_names)


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


def build(cfg: dict, parts: MethodParts, num_classes: int, in_channels: int = 3) -> NB201Supernet:
    """Build the supernet from a resolved config's ``space`` section and the method's parts."""
    space = cfg["space"]
    return NB201Supernet(num_classes, space["channels"], space["cells_per_stage"], space["ops"],
                         noise=parts.skip_transform, weighting=parts.weighting,
                         partial_channels=parts.partial_channels, in_channels=in_channels,
                         checkpoint=resolve_checkpoint(space["checkpoint"], cfg.get("device")),
                         auxiliary_skip=parts.auxiliary_skip)


def validate(cfg: dict) -> None:
    space = cfg["space"]
    check_op_list(space["ops"], NB201_OPS)
    check_checkpoint(space["checkpoint"])
    for key in ("channels", "cells_per_stage"):
        if space[key] < 1:
            raise UserError(f"space.{key} must be at least 1, got {space[key]}")


# --- the space --------------------------------------------------------------------------------

#: All-skip cell (the collapse) and the best cell of the table, for scale (CIFAR-10 test %).
ALL_SKIP = NB201Arch(("skip_connect",) * len(NB201_EDGES))


class NB201Space(Space):
    name = "nb201"
    description = "NAS-Bench-201: 6 mixed edges of 5 ops in one shared cell; every cell's accuracy is known"
    DEFAULTS = DEFAULTS
    genotype_types = (NB201Arch,)
    families = ("cifar", "imagenet16")
    TINY = {"space": {"channels": 4, "cells_per_stage": 1}, "network": {"channels": 4, "cells_per_stage": 1}}
    supports = Support(auxiliary_skip=True)  # every weighting, partial channels, noise, drop-path and DARTS-' skip

    def validate(self, cfg: dict) -> None:
        validate(cfg)

    def partial_channels_problem(self, space_cfg: dict, k: int) -> str | None:
        if space_cfg["channels"] % k:
            return f"space.channels={space_cfg['channels']} must be a multiple of edge.partial_channels"
        return None

    def skip_op_problem(self, space_cfg: dict) -> str | None:
        if "skip_connect" not in space_cfg["ops"]:
            return "it acts on skip_connect, which space.ops does not have"
        return None

    def make_supernet(self, cfg: dict, parts: MethodParts, num_classes: int, in_channels: int = 3):
        return build(cfg, parts, num_classes, in_channels)

    def genotype_metrics(self, arch: NB201Arch) -> dict:
        r = bench.lookup(arch)
        return {"nb201_index": r.index, "cifar10_test": r.cifar10_test, "cifar100_test": r.cifar100_test,
                "imagenet16_test": r.imagenet16_test, "skip_count": arch.count("skip_connect")}

    def describe(self, arch: NB201Arch) -> str:
        """The found cell with the benchmark's accuracies, said for what they are: after the
        benchmark's own 200-epoch training, with the best cell and the all-skip collapse for scale."""
        r, best = bench.lookup(arch), max(bench.table(), key=lambda row: row.cifar10_test)
        return "\n".join([
            f"found cell:      {r.arch}  (NAS-Bench-201 index {r.index})",
            "NAS-Bench-201 test accuracy of this cell trained by the benchmark (200 epochs; not measured by this search):",
            f"  CIFAR-10 {r.cifar10_test:.2f} %, CIFAR-100 {r.cifar100_test:.2f} %, ImageNet16-120 {r.imagenet16_test:.2f} %",
            f"  for scale, CIFAR-10: the best cell {best.cifar10_test:.2f} %, the all-skip_connect cell (collapse) "
            f"{bench.lookup(ALL_SKIP).cifar10_test:.2f} %",
        ])

    # --- genotypes ---
    def parse(self, text: str):
        return NB201Arch.parse(text) if text.lstrip().startswith("|") else None

    def to_json(self, arch: NB201Arch):
        return str(arch)

    def from_json(self, data, type_name: str | None = None):
        if isinstance(data, str):
            return NB201Arch.parse(data)
        return NB201Arch.from_ops(data)

    # --- evaluation network ---
    def network_defaults(self, family: str) -> dict:
        self.check_family(family)
        return {"channels": 16, "cells_per_stage": 5}

    def recipe(self, family: str) -> dict:
        # NAS-Bench-201 (Dong & Yang, 2020), Sec. 2.3: the same hyperparameters for every dataset.
        return {"epochs": 200, "batch_size": 256, "label_smoothing": 0.0,
                "weights": {"lr": 0.1, "lr_schedule": "cosine", "momentum": 0.9, "nesterov": True,
                            "weight_decay": 5e-4, "grad_clip": None},
                "auxiliary_weight": 0.0, "drop_path_prob": 0.0,
                "data": {"crop_padding": 2 if family == "imagenet16" else 4, "flip": True, "cutout": 0,
                         "resolution": 16 if family == "imagenet16" else 32}}

    def validate_network(self, network: dict, family: str) -> None:
        for key in ("channels", "cells_per_stage"):
            if not (isinstance(network[key], int) and network[key] >= 1):
                raise UserError(f"network.{key} must be a positive integer, got {network[key]!r}")

    def build_network(self, arch, family: str, num_classes: int, network: dict | None = None, in_channels: int = 3):
        self.check_genotype(arch)
        net = self.merge_network(self.network_defaults(family), network)
        self.validate_network(net, family)
        return NB201Network(arch, num_classes, net["channels"], net["cells_per_stage"], in_channels)

    # --- pictures ---
    def edge_labels(self, space_cfg: dict, kind: str, num_rows: int) -> list[str]:
        return [f"edge {t} \u2190 {s}" for t, s in NB201_EDGES]

    def cell_graphs(self, arch: NB201Arch) -> list[CellGraph]:
        # Nodes on a line: neighbours joined straight, 0->2 and 0->3 bow above, 1->3 below.
        positions = {str(i): (2.4 * i, 0.0) for i in range(4)}
        bend = {("0", "2"): -0.5, ("0", "3"): -0.5, ("1", "3"): 0.5, ("0", "1"): 0.0, ("1", "2"): 0.0, ("2", "3"): 0.0}
        edges = [(str(s), str(t), op) for (t, s), op in zip(NB201_EDGES, arch.ops)]
        title = f"NAS-Bench-201 cell (node 0 = input, 3 = output; dashed = none)\n{arch}"
        return [CellGraph(title, positions, edges, inputs=("0",), outputs=("3",), bend=bend)]


SPACE = NB201Space()
