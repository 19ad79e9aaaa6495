"""The DARTS genotype: the discrete cell a search ends with.

A genotype lists, for each intermediate node of the normal and the reduction cell, its two
incoming edges as ``(op, input)`` pairs; inputs 0 and 1 are the cell inputs c_{k-2} and c_{k-1},
input ``j >= 2`` is intermediate node ``j - 2``. It round-trips through JSON and through the text
form the literature prints (the DARTS release's ``namedtuple`` repr)::

    Genotype(normal=[('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[...])
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .literals import genotype_fields, literal
from .ops import OPS
from .runs import path_kind, read_text

_WHAT = "a genotype.json, a search run directory or a text file holding Genotype(...)"

Edge = tuple[str, int]
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


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
        values are read as literals (:mod:`noisydarts.literals`), never evaluated."""
        try:
            call = ast.parse(text.strip(), mode="eval").body
        except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
            raise UserError(f"cannot parse genotype text ({getattr(e, 'msg', None) or type(e).__name__}): "
                            "expected Genotype(normal=[...], ...)") from e
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", "")) == "Genotype"):
            raise UserError("genotype text must look like Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])")
        if call.args or any(kw.arg not in _FIELDS for kw in call.keywords):
            raise UserError(f"genotype text takes the fields {', '.join(_FIELDS)} by name, e.g. Genotype(normal=[...], ...)")
        return cls.from_dict({kw.arg: literal(kw.value, kw.arg) for kw in call.keywords})


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


def load_genotype(source: str | Path) -> Genotype:
    """Read a genotype from a ``.json`` file (or a search run directory's genotype.json),
    a text file holding the literature form, or that text itself."""
    path = Path(source)
    if path_kind(path) == "dir":
        path = path / "genotype.json"
        if path_kind(path) != "file":
            raise UserError(f"{source} has no genotype.json: give a finished search run directory or a genotype file")
    if path_kind(path) == "file":
        text = read_text(path, _WHAT)
    elif str(source).lstrip().startswith(("Genotype", "{")):
        text = str(source)
    else:
        raise UserError(f"genotype {source} not found: give a genotype.json, a run directory or Genotype(...) text")
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"malformed genotype file {source}: {e.msg} at line {e.lineno}") from e
        except RecursionError as e:
            raise UserError(f"malformed genotype file {source}: nested too deeply") from e
        return Genotype.from_dict(data.get("genotype", data) if isinstance(data, dict) else data)
    return Genotype.parse(text)


def load_any_genotype(source: str | Path):
    """Like :func:`load_genotype`, but also recognises NAS-Bench-201 cells: an arch string
    ``|op~0|+...``, or a genotype.json / run directory of an ``nb201`` search. Returns a
    :class:`Genotype` or a :class:`noisydarts.nb201.NB201Arch`."""
    from .nb201 import NB201Arch

    text = str(source).strip()
    if text.startswith("|"):
        return NB201Arch.parse(text)
    path = Path(source)
    if path_kind(path) == "dir":
        path = path / "genotype.json"
    if path_kind(path) == "file" and path.suffix == ".json":
        try:
            data = json.loads(read_text(path, _WHAT))
        except json.JSONDecodeError as e:
            raise UserError(f"malformed genotype file {path}: {e.msg} at line {e.lineno}") from e
        except RecursionError as e:
            raise UserError(f"malformed genotype file {path}: nested too deeply") from e
        if isinstance(data, dict) and data.get("space") == "nb201":
            return NB201Arch.parse(str(data.get("genotype", "")))
    elif path_kind(path) == "file" and read_text(path, _WHAT).strip().startswith("|"):
        return NB201Arch.parse(read_text(path, _WHAT))
    return load_genotype(source)
