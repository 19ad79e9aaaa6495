"""The DARTS genotype: the discrete cell a search ends with.

A genotype lists, for each intermediate node of the normal and the reduction cell, its two
incoming edges as ``(op, input)`` pairs; inputs 0 and 1 are the cell inputs c_{k-2} and c_{k-1},
input ``j >= 2`` is intermediate node ``j - 2``. It round-trips through JSON and through the text
form the literature prints (the DARTS release's ``namedtuple`` repr)::

    Genotype(normal=[('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[...])
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ...errors import UserError
from ..literals import edge_list, genotype_fields, int_list, parse_call
from ...nn.ops import OPS

Edge = tuple[str, int]
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
EXAMPLE = "Genotype(normal=[(op, input), ...], normal_concat=[...], reduce=[...], reduce_concat=[...])"


@dataclass(frozen=True)
class Genotype:
    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self):
        for cell in ("normal", "reduce"):
            edges = tuple((str(op), int(j)) for op, j in getattr(self, cell))
            concat = tuple(int(i) for i in getattr(self, cell + "_concat"))
            object.__setattr__(self, cell, edges)
            object.__setattr__(self, cell + "_concat", concat)
            _validate_cell(cell, edges, concat)

    @property
    def nodes(self) -> int:
        return len(self.normal) // 2

    def cell(self, kind: str) -> tuple[Edge, ...]:
        return self.normal if kind == "normal" else self.reduce

    def count(self, op: str, cell: str = "normal") -> int:
        return sum(1 for name, _ in self.cell(cell) if name == op)

    # --- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "normal": [list(e) for e in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(e) for e in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Genotype":
        if not isinstance(d, dict) or any(k not in d for k in _FIELDS):
            raise UserError(f"a genotype needs the keys {', '.join(_FIELDS)}")
        try:
            return cls(**genotype_fields(d, _FIELDS))
        except (TypeError, ValueError, OverflowError) as e:
            raise UserError(f"malformed genotype ({e}): each edge is [op_name, input_index]") from e

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __str__(self) -> str:
        def edges(es):
            return "[" + ", ".join(f"({op!r}, {j})" for op, j in es) + "]"

        return (
            f"Genotype(normal={edges(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={edges(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    @classmethod
    def parse(cls, text: str) -> "Genotype":
        """Parse the literature's text form (``range(2, 6)`` is accepted for the concat lists);
        values are read as literals (:mod:`noisydarts.spaces.literals`), never evaluated."""
        return cls.from_dict(parse_call(text, "Genotype", EXAMPLE, _FIELDS))

    # --- what the evaluation networks ask ------------------------------------------------------
    def nodes_of(self, kind: str) -> list[list[Edge]]:
        """The ``(op, input)`` pairs of each intermediate node of the ``normal`` or ``reduce`` cell."""
        edges = self.cell(kind)
        return [list(edges[2 * i: 2 * i + 2]) for i in range(len(edges) // 2)]

    def cell_genes(self, layers: int) -> list[tuple[list, tuple[int, ...], bool]]:
        """One ``(nodes, concat, reduction)`` per cell of a ``layers``-cell network: reduction
        cells at 1/3 and 2/3 of the depth, normal cells elsewhere (DARTS)."""
        from .network import reduction_layers

        out = []
        for i in range(layers):
            kind = "reduce" if i in reduction_layers(layers) else "normal"
            out.append((self.nodes_of(kind), getattr(self, kind + "_concat"), kind == "reduce"))
        return out


def _validate_cell(cell: str, edges: tuple[Edge, ...], concat: tuple[int, ...]) -> None:
    if not edges or len(edges) % 2:
        raise UserError(f"the {cell} cell has {len(edges)} edges: a DARTS genotype has two per intermediate node")
    nodes = len(edges) // 2
    for k, (op, j) in enumerate(edges):
        node = k // 2
        if op not in OPS or op == "none":
            raise UserError(f"unknown operation {op!r} in the {cell} cell: choose from {', '.join(sorted(set(OPS) - {'none'}))}")
        if not 0 <= j < node + 2:
            raise UserError(
                f"edge {k} of the {cell} cell (node {node + 2}) takes input {j}: inputs must be 0..{node + 1}"
            )
    for i in concat:
        if not 0 <= i < nodes + 2:
            raise UserError(f"{cell}_concat names node {i}: nodes are 0..{nodes + 1}")


# --- variable topology (SI-VDNAS) ------------------------------------------------------------------

VARIABLE_EXAMPLE = ("VariableGenotype(normal=[[(op, input), ...], ...], normal_concat=[...], "
                    "reduce=[[(op, input), ...], ...], reduce_concat=[...])")


@dataclass(frozen=True)
class VariableGenotype:
    """A DARTS-space genotype with any number of ``(op, input)`` pairs per intermediate node:
    several ops on one edge and any number of incoming edges (SI-VDNAS, "variable operations and
    edges"). ``normal[i]`` lists node ``i``'s pairs; the evaluation cell sums all of them. Text
    form (the JSON form has the same keys)::

        VariableGenotype(normal=[[('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1)], ...],
                         normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])
    """

    normal: tuple[tuple[Edge, ...], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[Edge, ...], ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self):
        for cell in ("normal", "reduce"):
            value = getattr(self, cell)
            if not isinstance(value, (list, tuple)):
                raise UserError(f"genotype field {cell!r} must list, per node, its (op, input) pairs: {VARIABLE_EXAMPLE}")
            # the same type checks as every genotype (no silent int(0.5) or str(3))
            nodes = tuple(edge_list(node, f"{cell}[{i}]") for i, node in enumerate(value))
            concat = int_list(getattr(self, cell + "_concat"), cell + "_concat")
            object.__setattr__(self, cell, nodes)
            object.__setattr__(self, cell + "_concat", concat)
            _validate_variable_cell(cell, nodes, concat)
        if len(self.normal) != len(self.reduce):
            raise UserError(f"the normal cell has {len(self.normal)} nodes and the reduction cell "
                            f"{len(self.reduce)}: both cells of a genotype have the same number")

    @property
    def nodes(self) -> int:
        return len(self.normal)

    def cell(self, kind: str) -> tuple[Edge, ...]:
        """All ``(op, input)`` pairs of the ``normal`` or ``reduce`` cell, node by node."""
        return tuple(pair for node in getattr(self, "normal" if kind == "normal" else "reduce") for pair in node)

    def count(self, op: str, cell: str = "normal") -> int:
        return sum(1 for name, _ in self.cell(cell) if name == op)

    def nodes_of(self, kind: str) -> list[list[Edge]]:
        return [list(node) for node in getattr(self, "normal" if kind == "normal" else "reduce")]

    cell_genes = Genotype.cell_genes

    def to_dict(self) -> dict:
        return {"normal": [[list(e) for e in node] for node in self.normal], "normal_concat": list(self.normal_concat),
                "reduce": [[list(e) for e in node] for node in self.reduce], "reduce_concat": list(self.reduce_concat)}

    @classmethod
    def from_dict(cls, d: dict) -> "VariableGenotype":
        if not isinstance(d, dict) or set(d) != set(_FIELDS):
            raise UserError(f"a variable genotype needs exactly the keys {', '.join(_FIELDS)}: {VARIABLE_EXAMPLE}")
        if not all(isinstance(d[k], (list, tuple)) and all(isinstance(n, (list, tuple)) for n in d[k])
                   for k in ("normal", "reduce")):
            raise UserError(f"a variable genotype lists, per node, a list of (op, input) pairs: {VARIABLE_EXAMPLE}")
        return cls(d["normal"], d["normal_concat"], d["reduce"], d["reduce_concat"])

    @classmethod
    def parse(cls, text: str) -> "VariableGenotype":
        return cls.from_dict(parse_call(text, "VariableGenotype", VARIABLE_EXAMPLE, _FIELDS))

    def __str__(self) -> str:
        def nodes(ns):
            return "[" + ", ".join("[" + ", ".join(f"({op!r}, {j})" for op, j in node) + "]" for node in ns) + "]"

        return (f"VariableGenotype(normal={nodes(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={nodes(self.reduce)}, reduce_concat={list(self.reduce_concat)})")


def _validate_variable_cell(cell: str, nodes, concat) -> None:
    if not nodes:
        raise UserError(f"the {cell} cell has no nodes: {VARIABLE_EXAMPLE}")
    for i, node in enumerate(nodes):
        if not node:
            raise UserError(f"node {i + 2} of the {cell} cell has no (op, input) pair: every node needs an input")
        if len(set(node)) != len(node):
            raise UserError(f"node {i + 2} of the {cell} cell lists the same (op, input) pair twice")
        for op, j in node:
            if op not in OPS or op == "none":
                raise UserError(f"unknown operation {op!r} in the {cell} cell: choose from "
                                f"{', '.join(sorted(set(OPS) - {'none'}))}")
            if not 0 <= j < i + 2:
                raise UserError(f"node {i + 2} of the {cell} cell takes input {j}: inputs must be 0..{i + 1}")
    for i in concat:
        if not 0 <= i < len(nodes) + 2:
            raise UserError(f"{cell}_concat names node {i}: nodes are 0..{len(nodes) + 1}")
