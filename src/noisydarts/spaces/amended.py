"""Amended-DARTS' deep search space S2 (Sec. 4.1.3): every cell has its own architecture.

The DARTS supernet (see :mod:`.darts`) at evaluation depth (20 cells, reductions at 1/3 and
2/3), with the edge-fixed cells of S1 by default and the two ops ``skip_connect`` and
``sep_conv_3x3``; unlike S1, no two cells share ``alpha``: cell ``i`` has ``alpha_cell{i}``.
The derived architecture is a :class:`CellwiseGenotype`, one DARTS gene per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..noise import build_skip_transform
from . import darts
from .darts import EDGES, DartsSupernet, _derive_cell

DEFAULTS = {
    **darts.DEFAULTS,
    "layers": 20,
    "edges": "fixed",
    "ops": ["skip_connect", "sep_conv_3x3"],
}


@dataclass
class CellwiseGenotype:
    """One gene (``[(op, input), ...]`` two per node) per cell, and which cells reduce."""

    cells: list
    reductions: list
    concat: list

    def count(self, op: str, kind: str | None = None) -> int:
        """How often ``op`` appears, in all cells or only the ``normal`` / ``reduce`` ones."""
        keep = {None: (True, False), "normal": (False,), "reduce": (True,)}[kind]
        return sum(o == op for gene, r in zip(self.cells, self.reductions) if r in keep for o, _ in gene)

    def to_dict(self) -> dict:
        return {"cells": [[list(g) for g in gene] for gene in self.cells], "reductions": self.reductions,
                "concat": self.concat}

    def __str__(self) -> str:
        return " | ".join(("R:" if r else "") + " ".join(f"{o}<{s}" for o, s in gene)
                          for gene, r in zip(self.cells, self.reductions))


class DeepSupernet(DartsSupernet):
    """A DARTS supernet whose cells each have their own ``alpha`` (``kinds`` = cell names)."""

    def __init__(self, num_classes: int, channels: int = 16, layers: int = 20, **kwargs):
        self.kinds = tuple(f"cell{i}" for i in range(layers))  # before the base creates alpha per kind
        super().__init__(num_classes, channels, layers, **kwargs)

    def _cell_weights(self, weights: dict, index: int, cell):
        return weights[f"cell{index}"]

    def genotype(self) -> CellwiseGenotype:
        w = self.arch_weights()
        cells = [_derive_cell(w[kind], self.op_names, self.edge_list) for kind in self.kinds]
        nodes = len({t for t, _ in self.edge_list})
        return CellwiseGenotype(cells, [c.reduction for c in self.cells], list(range(2, 2 + nodes)))


def build(cfg: dict, num_classes: int, in_channels: int = 3) -> DeepSupernet:
    space, edge = cfg["space"], cfg["edge"]
    return DeepSupernet(num_classes, space["channels"], space["layers"], nodes=space["nodes"],
                        stem_multiplier=space["stem_multiplier"], ops=space["ops"],
                        noise=build_skip_transform(cfg["noise"]), noise_on_reduction=cfg["noise"]["reduction_skips"],
                        weighting=edge["weighting"], partial_channels=edge["partial_channels"],
                        edges=EDGES[space["edges"]](space["nodes"]), in_channels=in_channels,
                        dropout=space["dropout"], aux_weight=space["aux_weight"])


def validate(cfg: dict) -> None:
    darts.validate(cfg)
    if cfg["space"]["layers"] < 3:
        raise UserError(f"space.layers must be at least 3 for the deep space (two reduction cells), got {cfg['space']['layers']}")
