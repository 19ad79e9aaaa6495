"""Amended-DARTS' deep search space S2 (Sec. 4.1.3): every cell has its own architecture.

The DARTS supernet (see :mod:`.darts`) at evaluation depth (20 cells, reductions at 1/3 and
2/3), with the edge-fixed cells of S1 by default and the two ops ``skip_connect`` and
``sep_conv_3x3``; unlike S1, no two cells share ``alpha``: cell ``i`` has ``alpha_cell{i}``.
The derived architecture is a :class:`CellwiseGenotype`, one DARTS gene per cell, and its
evaluation network stacks exactly those cells (the search depth is the evaluation depth: that
is the point of S2), with the DARTS CIFAR or ImageNet stem, auxiliary head and drop-path.

Published figures (Table 1 and 2 of Amended-DARTS): 2.60 % CIFAR-10 error with 3.6 M parameters;
24.3 % ImageNet top-1 error with 5.5 M parameters and 590 M mult-adds. The S2 genotype itself is
only drawn in the paper's Figure 3 (lost in the text), so a parameter count can only be checked
against the range an S2 genotype can have (all skip_connect .. all sep_conv_3x3; see the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...nn.recompute import resolve_checkpoint
from ...errors import UserError
from ...methods.parts import MethodParts, Support
from ...nn.supernet import Supernet
from ..darts import SPACE as DARTS_SPACE
from ..darts import cell_graph
from ..darts import supernet as darts_supernet
from ..literals import edge_list, int_list, parse_call
from ..base import CellGraph, Space
from ..darts.genotype import _validate_cell
from ..darts.network import NETWORKS
from ..darts.supernet import EDGES, DartsSupernet, _derive_cell

EXAMPLE = "CellwiseGenotype(cells=[[(op, input), ...], ...], reductions=[False, ...], concat=[2, 3, 4, 5])"

DEFAULTS = {
    **{key: value for key, value in darts_supernet.DEFAULTS.items() if key != "op_set"},  # RobustDARTS' are 8-cell
    "layers": 20,
    "edges": "fixed",
    "ops": ["skip_connect", "sep_conv_3x3"],
}


@dataclass(frozen=True)
class CellwiseGenotype:
    """One gene (``[(op, input), ...]``, two per node, DARTS form) per cell, which cells reduce,
    and the nodes every cell concatenates."""

    cells: tuple
    reductions: tuple
    concat: tuple

    def __post_init__(self):
        if not isinstance(self.cells, (list, tuple)) or not isinstance(self.reductions, (list, tuple)):
            raise UserError(f"a cell-wise genotype needs a list of genes and a list of reduction flags: {EXAMPLE}")
        cells = tuple(edge_list(gene, f"cells[{i}]") for i, gene in enumerate(self.cells))
        reductions = tuple(self.reductions)
        concat = int_list(self.concat, "concat")
        if not cells or len(reductions) != len(cells) or not all(isinstance(r, bool) for r in reductions):
            raise UserError(f"a cell-wise genotype needs a gene and a reduction flag (true/false) per cell: {EXAMPLE}")
        for i, gene in enumerate(cells):
            _validate_cell(f"cell {i}", gene, concat)
        object.__setattr__(self, "cells", cells)
        object.__setattr__(self, "reductions", reductions)
        object.__setattr__(self, "concat", concat)

    def count(self, op: str, kind: str | None = None) -> int:
        """How often ``op`` appears, in all cells or only the ``normal`` / ``reduce`` ones."""
        keep = {None: (True, False), "normal": (False,), "reduce": (True,)}[kind]
        return sum(o == op for gene, r in zip(self.cells, self.reductions) if r in keep for o, _ in gene)

    def cell_genes(self, layers: int | None = None) -> list[tuple[list, tuple[int, ...], bool]]:
        """``(nodes, concat, reduction)`` of every cell (what the evaluation networks stack)."""
        if layers is not None and layers != len(self.cells):
            raise UserError(f"this cell-wise genotype has {len(self.cells)} cells; its network cannot have {layers}")
        return [([list(gene[2 * i: 2 * i + 2]) for i in range(len(gene) // 2)], self.concat, r)
                for gene, r in zip(self.cells, self.reductions)]

    def to_dict(self) -> dict:
        return {"cells": [[list(e) for e in gene] for gene in self.cells], "reductions": list(self.reductions),
                "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, d) -> "CellwiseGenotype":
        if not isinstance(d, dict) or set(d) != {"cells", "reductions", "concat"}:
            raise UserError(f"a cell-wise genotype needs exactly the keys cells, reductions, concat: {EXAMPLE}")
        return cls(d["cells"], d["reductions"], d["concat"])

    @classmethod
    def parse(cls, text: str) -> "CellwiseGenotype":
        return cls.from_dict(parse_call(text, "CellwiseGenotype", EXAMPLE, ("cells", "reductions", "concat")))

    def __str__(self) -> str:
        cells = ", ".join("[" + ", ".join(f"({op!r}, {j})" for op, j in gene) + "]" for gene in self.cells)
        return f"CellwiseGenotype(cells=[{cells}], reductions={list(self.reductions)}, concat={list(self.concat)})"


class DeepSupernet(DartsSupernet):
    """A DARTS supernet whose cells each have their own ``alpha`` (``kinds`` = cell names)."""

    def __init__(self, num_classes: int, channels: int = 16, layers: int = 20, **kwargs):
        self.kinds = tuple(f"cell{i}" for i in range(layers))  # before the base creates alpha per kind
        super().__init__(num_classes, channels, layers, **kwargs)

    def _cell_kind(self, index: int, cell) -> str:
        return f"cell{index}"

    def epoch_metrics(self) -> dict:
        # S2's derivation is always its own (two edges per node), so there is no other genotype to log.
        return Supernet.epoch_metrics(self)

    def genotype(self) -> CellwiseGenotype:
        w = self.arch_weights()
        cells = [_derive_cell(w[kind], self.op_names, self.edge_list) for kind in self.kinds]
        nodes = len({t for t, _ in self.edge_list})
        return CellwiseGenotype(cells, tuple(c.reduction for c in self.cells), tuple(range(2, 2 + nodes)))


def build(cfg: dict, parts: MethodParts, num_classes: int, in_channels: int = 3) -> DeepSupernet:
    space = cfg["space"]
    return DeepSupernet(num_classes, space["channels"], space["layers"], nodes=space["nodes"],
                        stem_multiplier=space["stem_multiplier"], ops=space["ops"],
                        noise=parts.skip_transform, noise_on_reduction=parts.skip_transform_on_reduction,
                        weighting=parts.weighting, partial_channels=parts.partial_channels,
                        edges=EDGES[space["edges"]](space["nodes"]), in_channels=in_channels,
                        dropout=space["dropout"], aux_weight=space["aux_weight"],
                        checkpoint=resolve_checkpoint(space["checkpoint"], cfg.get("device")),
                        op_transforms=parts.op_transforms, auxiliary_skip=parts.auxiliary_skip)


def validate(cfg: dict) -> None:
    darts_supernet.validate(cfg)
    if cfg["space"]["layers"] < 3:
        raise UserError(f"space.layers must be at least 3 for the deep space (two reduction cells), got {cfg['space']['layers']}")


# --- the space --------------------------------------------------------------------------------

class AmendedS2Space(Space):
    name = "amended"
    description = "Amended-DARTS S2: the DARTS supernet at evaluation depth, every cell its own alpha"
    DEFAULTS = DEFAULTS
    genotype_types = (CellwiseGenotype,)
    families = ("cifar", "imagenet")
    TINY = {"space": {"channels": 4, "layers": 3, "nodes": 2, "aux_weight": 0.0}, "network": {"channels": 4}}
    # every weighting, partial channels, noise, drop-path and DARTS-' skip (the DARTS supernet's edges);
    # its derivation is always its own (two edges per node, every cell its own)
    supports = Support(auxiliary_skip=True)

    def validate(self, cfg: dict) -> None:
        validate(cfg)

    def partial_channels_problem(self, space_cfg: dict, k: int) -> str | None:
        return darts_supernet.partial_channels_problem(space_cfg, k)

    def skip_op_problem(self, space_cfg: dict) -> str | None:
        return darts_supernet.skip_op_problem(space_cfg)

    def make_supernet(self, cfg: dict, parts: MethodParts, num_classes: int, in_channels: int = 3):
        return build(cfg, parts, num_classes, in_channels)

    def genotype_metrics(self, genotype: CellwiseGenotype) -> dict:
        return {"skip_normal": genotype.count("skip_connect", "normal"),
                "skip_reduce": genotype.count("skip_connect", "reduce")}

    def parse(self, text: str):
        return CellwiseGenotype.parse(text) if text.lstrip().startswith("CellwiseGenotype") else None

    def to_json(self, genotype: CellwiseGenotype):
        return genotype.to_dict()

    def from_json(self, data, type_name: str | None = None):
        return CellwiseGenotype.from_dict(data)

    def network_defaults(self, family: str) -> dict:
        self.check_family(family)  # the genotype fixes the number of cells
        return {"channels": 48 if family == "imagenet" else 36, "auxiliary": True}

    def recipe(self, family: str) -> dict:
        return DARTS_SPACE.recipe(family)  # Amended-DARTS re-trains as DARTS does (Sec. 4.1)

    def validate_network(self, network: dict, family: str) -> None:
        if not (isinstance(network["channels"], int) and network["channels"] >= 2 and network["channels"] % 2 == 0):
            raise UserError(f"network.channels must be an even integer >= 2, got {network['channels']!r}")

    def build_network(self, genotype, family: str, num_classes: int, network: dict | None = None, in_channels: int = 3):
        self.check_genotype(genotype)
        net = self.merge_network(self.network_defaults(family), network)
        self.validate_network(net, family)
        return NETWORKS[family](genotype, num_classes, net["channels"], len(genotype.cells), bool(net["auxiliary"]),
                                0.0, in_channels)

    def edge_labels(self, space_cfg: dict, kind: str, num_rows: int) -> list[str]:
        return DARTS_SPACE.edge_labels(space_cfg, kind, num_rows)

    def cell_graphs(self, genotype: CellwiseGenotype) -> list[CellGraph]:
        graphs = []
        for i, (nodes, concat, reduction) in enumerate(genotype.cell_genes()):
            skips = sum(op == "skip_connect" for node in nodes for op, _ in node)
            graphs.append(cell_graph(f"cell {i}{' (reduction)' if reduction else ''}: {skips} skip", nodes, concat))
        return graphs


SPACE = AmendedS2Space()
