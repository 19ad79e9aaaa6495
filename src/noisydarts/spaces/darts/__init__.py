"""The DARTS cell space (Liu et al., 2019), as searched by NoisyDARTS, PC-DARTS and Amended-DARTS S1.

* :mod:`.op_sets`: RobustDARTS' reduced spaces S1-S4 (``space.op_set``);
* :mod:`.supernet`: the search cells, the supernet and the derivation (``space.*`` keys);
* :mod:`.genotype`: :class:`Genotype`, its text and JSON forms, and :class:`VariableGenotype`
  (any number of ``(op, input)`` pairs per node: SI-VDNAS' variable operations and edges);
* :mod:`.network`: the evaluation networks (CIFAR: C=36, 20 cells; ImageNet mobile setting:
  C=48, 14 cells) with DARTS' auxiliary heads and drop-path.

The default training recipe is the DARTS evaluation protocol (see :mod:`noisydarts.train`), and
for the ``imagenet`` family the mobile setting: 250 epochs, label smoothing 0.1, wd 3e-5 (DARTS
A.2), lr 0.5 decayed linearly to 0 (PC-DARTS' ImageNet recipe, which NoisyDARTS follows), batch 128.
"""

from __future__ import annotations

import re

from ...errors import UserError
from ...methods.parts import Support
from ..base import CellGraph, Space
from . import supernet
from .genotype import Genotype, VariableGenotype
from .network import NETWORKS, Cell, NetworkCIFAR, NetworkImageNet, drop_path
from .op_sets import OP_SETS, columns
from .supernet import EDGES, DartsSupernet, SearchCell, dense_edges, derive, derive_variable, fixed_edges

C_PREV_PREV, C_PREV, C_OUT = "c\u2096\u208b\u2082", "c\u2096\u208b\u2081", "c\u2096"

_GENOTYPE_TEXT = re.compile(r"^\s*([A-Za-z_]\w*\.)*Genotype\s*\(")
_VARIABLE_TEXT = re.compile(r"^\s*([A-Za-z_]\w*\.)*VariableGenotype\s*\(")


def node_name(j: int) -> str:
    """Cell inputs are c_{k-2} and c_{k-1} (0 and 1), intermediate node ``j >= 2`` is ``j - 2``."""
    return (C_PREV_PREV, C_PREV)[j] if j < 2 else str(j - 2)


def cell_graph(title: str, nodes, concat) -> CellGraph:
    """A DARTS cell (``nodes[i]``: the ``(op, input)`` pairs of node i) drawn left to right:
    the two inputs on the left, one above and one below the line of intermediate nodes, the
    output c_k on the right."""
    n = len(nodes)
    positions = {C_PREV_PREV: (0.0, 1.7), C_PREV: (0.0, -1.7), C_OUT: (2.6 * n + 2.4, 0.0)}
    positions.update({str(i): (2.6 + 2.6 * i, 0.0) for i in range(n)})
    edges = [(node_name(j), str(i), op) for i, node in enumerate(nodes) for op, j in node]
    edges += [(node_name(j), C_OUT, None) for j in concat]
    return CellGraph(title, positions, edges, inputs=(C_PREV_PREV, C_PREV), outputs=(C_OUT,))


class DartsSpace(Space):
    name = "darts"
    description = ("the DARTS cell space: normal and reduction cells, 14 mixed edges (or Amended-DARTS S1's 8 fixed "
                   "ones); RobustDARTS' reduced spaces S1-S4 with space.op_set")
    DEFAULTS = supernet.DEFAULTS
    genotype_types = (Genotype, VariableGenotype)
    families = ("cifar", "imagenet")
    TINY = {"space": {"channels": 4, "layers": 3, "nodes": 2}, "network": {"channels": 4, "layers": 3}}
    # every weighting, partial channels, noise, drop-path, DARTS-' skip, and the cell a weighting selects
    supports = Support(auxiliary_skip=True, weighting_derivation=True)

    # --- search ---
    def normalize(self, cfg: dict) -> None:
        """``space.op_set`` (RobustDARTS' S1-S4) replaces ``space.ops`` by its columns' names."""
        name = cfg["space"].get("op_set")
        if name in OP_SETS:
            cfg["space"]["ops"] = columns(name)

    def validate(self, cfg: dict) -> None:
        supernet.validate(cfg)

    def partial_channels_problem(self, space_cfg: dict, k: int) -> str | None:
        return supernet.partial_channels_problem(space_cfg, k)

    def skip_op_problem(self, space_cfg: dict) -> str | None:
        return supernet.skip_op_problem(space_cfg)

    def make_supernet(self, cfg: dict, parts, num_classes: int, in_channels: int = 3):
        return supernet.build(cfg, parts, num_classes, in_channels)

    def genotype_metrics(self, genotype) -> dict:
        out = {"skip_normal": genotype.count("skip_connect", "normal"),
               "skip_reduce": genotype.count("skip_connect", "reduce")}
        if isinstance(genotype, VariableGenotype):  # how many (op, input) pairs each cell kept
            out.update(ops_normal=len(genotype.cell("normal")), ops_reduce=len(genotype.cell("reduce")))
        return out

    # --- genotypes ---
    def parse(self, text: str):
        if _VARIABLE_TEXT.match(text):
            return VariableGenotype.parse(text)
        return Genotype.parse(text) if _GENOTYPE_TEXT.match(text) else None

    def to_json(self, genotype):
        return genotype.to_dict()

    def from_json(self, data, type_name: str | None = None):
        if type_name == VariableGenotype.__name__ or (type_name is None and _nested_nodes(data)):
            return VariableGenotype.from_dict(data)
        if type_name not in (None, Genotype.__name__):
            raise UserError(f"unknown genotype type {type_name!r} for the darts space: "
                            f"{Genotype.__name__} or {VariableGenotype.__name__}")
        return Genotype.from_dict(data)

    # --- evaluation network ---
    def network_defaults(self, family: str) -> dict:
        self.check_family(family)
        if family == "imagenet":
            return {"channels": 48, "layers": 14, "auxiliary": True}
        return {"channels": 36, "layers": 20, "auxiliary": True}

    def recipe(self, family: str) -> dict:
        if family == "imagenet":  # the DARTS mobile setting as NoisyDARTS / PC-DARTS train it
            return {"epochs": 250, "batch_size": 128, "drop_path_prob": 0.0, "label_smoothing": 0.1,
                    "weights": {"lr": 0.5, "lr_schedule": "linear", "weight_decay": 3e-5},
                    "data": {"resolution": 224, "crop_padding": 0, "cutout": 0}}
        return {}  # noisydarts.train.DEFAULTS is the DARTS CIFAR protocol

    def validate_network(self, network: dict, family: str) -> None:
        if not (isinstance(network["channels"], int) and network["channels"] >= 2 and network["channels"] % 2 == 0):
            raise UserError(f"network.channels must be an even integer >= 2, got {network['channels']!r}")
        if not (isinstance(network["layers"], int) and network["layers"] >= 3):
            raise UserError(f"network.layers must be an integer >= 3 (two cells reduce), got {network['layers']!r}")

    def build_network(self, genotype, family: str, num_classes: int, network: dict | None = None,
                      in_channels: int = 3):
        self.check_genotype(genotype)
        net = self.merge_network(self.network_defaults(family), network)
        self.validate_network(net, family)
        return NETWORKS[family](genotype, num_classes, net["channels"], net["layers"], bool(net["auxiliary"]),
                                0.0, in_channels)

    # --- pictures ---
    def edge_labels(self, space_cfg: dict, kind: str, num_rows: int) -> list[str]:
        edges = EDGES.get(space_cfg.get("edges", "dense"), dense_edges)(int(space_cfg.get("nodes", 4)))
        labels = [f"edge {node_name(t)} \u2190 {node_name(s)}" for t, s in edges]
        return labels if len(labels) == num_rows else super().edge_labels(space_cfg, kind, num_rows)

    def cell_graphs(self, genotype) -> list[CellGraph]:
        graphs = []
        for kind in ("normal", "reduce"):
            skips = genotype.count("skip_connect", kind)
            title = f"{kind} cell ({skips} skip connection{'s' * (skips != 1)})"
            if isinstance(genotype, VariableGenotype):  # several ops on one edge are fanned out
                title = f"{kind} cell ({len(genotype.cell(kind))} ops, {skips} skip connection{'s' * (skips != 1)})"
            graphs.append(cell_graph(title, genotype.nodes_of(kind), getattr(genotype, kind + "_concat")))
        return graphs


def _nested_nodes(data) -> bool:
    """True for the JSON form of a :class:`VariableGenotype` (nodes are lists of pairs)."""
    normal = data.get("normal") if isinstance(data, dict) else None
    return bool(normal) and isinstance(normal[0], (list, tuple)) and bool(normal[0]) \
        and isinstance(normal[0][0], (list, tuple))


SPACE = DartsSpace()

__all__ = ["SPACE", "Cell", "DartsSpace", "DartsSupernet", "Genotype", "NetworkCIFAR", "NetworkImageNet",
           "SearchCell", "VariableGenotype", "cell_graph", "dense_edges", "derive", "derive_variable", "drop_path",
           "fixed_edges", "node_name"]
