"""RobustDARTS' reduced DARTS spaces S1-S4 (Zela et al., "Understanding and Robustifying
Differentiable Architecture Search", ICLR 2020, Sec. 4.1), chosen with ``space.op_set``.

Each is the DARTS cell (4 nodes, 14 edges, normal and reduction cells) with fewer ops per edge,
built so that DARTS' failure shows quickly:

* **S1**: two ops per edge, a different pair on every edge and in each cell type: the two ops
  with the largest alpha of each edge after a full DARTS search. The pairs below are the
  release's published data (``src/spaces.py``, ``primitives_1``, github.com/automl/RobustDARTS),
  edge by edge in DARTS' edge order (node 0: c_{k-2}, c_{k-1}; node 1: c_{k-2}, c_{k-1}, node 0; ...).
* **S2**: ``skip_connect`` and ``sep_conv_3x3`` on every edge.
* **S3**: ``none``, ``skip_connect`` and ``sep_conv_3x3`` on every edge.
* **S4**: ``noise`` and ``sep_conv_3x3`` on every edge; ``noise`` replaces its input by N(0, 1)
  draws (:class:`noisydarts.nn.ops.NoiseOp`), so choosing it is always a mistake.

The architecture matrices keep one column per position of an edge's op list: S2-S4 name their
columns by their ops (``space.ops`` is set to them), S1's columns are ``op 1`` and ``op 2``, the
first and second op of each edge's pair. Derivation, genotypes and evaluation networks are the
DARTS space's: a derived S1 cell names the real ops.
"""

from __future__ import annotations

from ...errors import UserError

SKIP, SEP3, DIL3, DIL5, MAX, AVG = ("skip_connect", "sep_conv_3x3", "dil_conv_3x3", "dil_conv_5x5",
                                    "max_pool_3x3", "avg_pool_3x3")

#: S1, edge by edge (``primitives_1`` of the RobustDARTS release, src/spaces.py).
S1 = {
    "normal": ((SKIP, DIL3), (SKIP, DIL5), (SKIP, DIL5), (SKIP, SEP3), (SKIP, DIL3), (MAX, SKIP), (SKIP, SEP3),
               (SKIP, SEP3), (SKIP, DIL3), (SKIP, SEP3), (MAX, SKIP), (SKIP, DIL3), (DIL3, DIL5), (DIL3, DIL5)),
    "reduce": ((MAX, AVG), (MAX, DIL3), (MAX, AVG), (MAX, AVG), (SKIP, DIL5), (MAX, AVG), (MAX, SEP3),
               (SKIP, DIL3), (SKIP, DIL5), (MAX, AVG), (MAX, AVG), (SKIP, DIL5), (SKIP, DIL5), (SKIP, DIL5)),
}
S1_COLUMNS = ("op 1", "op 2")

#: The spaces with the same ops on every edge.
UNIFORM = {
    "s2": (SKIP, SEP3),
    "s3": ("none", SKIP, SEP3),
    "s4": ("noise", SEP3),
}
OP_SETS = ("s1", *UNIFORM)
#: S1's pairs are given for the DARTS cell of 4 nodes with every edge (14 edges).
S1_NODES = 4


def check_op_set(space: dict) -> None:
    """``space.op_set``: null or one of s1..s4; S1's per-edge pairs need the dense 4-node cell."""
    name = space.get("op_set")
    if name is None:
        return
    if name not in OP_SETS:
        raise UserError(f"space.op_set must be one of {', '.join(OP_SETS)} (RobustDARTS' spaces) or null, got {name!r}")
    if name == "s1" and (space["nodes"] != S1_NODES or space["edges"] != "dense"):
        raise UserError(f"space.op_set=s1 gives an op pair to each of the 14 edges of the 4-node DARTS cell: "
                        f"set space.nodes=4 and space.edges=dense (got {space['nodes']} and {space['edges']})")


def columns(name: str) -> list[str]:
    """What ``space.ops`` lists for op set ``name``: the names of the architecture matrices' columns."""
    return list(S1_COLUMNS) if name == "s1" else list(UNIFORM[name])


def edge_ops(name: str | None, num_edges: int) -> dict[str, list[list[str]]] | None:
    """Per cell type, each edge's op list for op set ``name``; None when every edge has ``space.ops``
    (no op set, or S2-S4, whose ``space.ops`` are the set's)."""
    if name != "s1":
        return None
    if num_edges != len(S1["normal"]):
        raise UserError(f"space.op_set=s1 needs the 14-edge DARTS cell, this one has {num_edges} edges")
    return {kind: [list(pair) for pair in pairs] for kind, pairs in S1.items()}
