"""NAS-Bench-201 ground truth: parse cell strings and look up their benchmark results.

The table (``assets/nb201_accuracy.csv.gz``, see ``assets/NB201_SOURCE.md``) holds one row per
NB201 cell; row i is benchmark index i. Accuracies are 200-epoch test accuracies in %, averaged
over training seeds; params/FLOPs follow NB201's ``cost_info`` convention for the CIFAR-10 network.

    >>> r = lookup("|skip_connect~0|+|skip_connect~0|skip_connect~1|+"
    ...            "|skip_connect~0|skip_connect~1|skip_connect~2|")
    >>> r.cifar10_test
    54.2967

The table is loaded lazily, once per process, on the first call to :func:`lookup`,
:func:`by_index` or :func:`table`.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import gzip
import io
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

__all__ = [
    "NB201_OPS",
    "NB201_EDGES",
    "NB201Arch",
    "NB201Result",
    "lookup",
    "by_index",
    "table",
    "format_result",
]

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

# (to_node, from_node) for the 6 edges of the cell, in the order they appear in the arch string.
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

_N_NODES = 3  # intermediate + output nodes after the input node 0
_N_ARCHS = len(NB201_OPS) ** len(NB201_EDGES)  # 15,625
_ASSET = Path(__file__).resolve().parents[1] / "assets" / "nb201_accuracy.csv.gz"
_HEADER = ["arch", "cifar10_test", "cifar100_test", "imagenet16_test", "params_m", "flops_m"]
_FORMAT = "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' with op one of " + ", ".join(NB201_OPS)


def _show(text: str, limit: int = 120) -> str:
    """repr() of user text, shortened so error messages stay on one readable line."""
    s = repr(text)
    return s if len(s) <= limit else s[: limit - 4] + "...'"


def _bad(text: str, what: str) -> UserError:
    return UserError(f"malformed NB201 arch string {_show(text)}: {what}; expected {_FORMAT}")


@dataclass(frozen=True)
class NB201Arch:
    """One NB201 cell: the op on each edge, in :data:`NB201_EDGES` order."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        ops = self.ops
        if isinstance(ops, str) or not isinstance(ops, Iterable):
            raise UserError(
                f"NB201 ops must be a sequence of {len(NB201_EDGES)} op names, got {type(ops).__name__}; "
                f"pass e.g. ('nor_conv_3x3',) * {len(NB201_EDGES)}"
            )
        ops = tuple(ops)
        if len(ops) != len(NB201_EDGES):
            raise UserError(
                f"NB201 cell needs {len(NB201_EDGES)} ops (one per edge {NB201_EDGES}), got {len(ops)}"
            )
        for k, op in enumerate(ops):
            if op not in NB201_OPS:
                raise UserError(
                    f"unknown NB201 op {op!r} on edge {k} {NB201_EDGES[k]}; use one of {', '.join(NB201_OPS)}"
                )
        object.__setattr__(self, "ops", ops)

    @classmethod
    def from_ops(cls, ops: Iterable[str | int]) -> NB201Arch:
        """Build from 6 ops in :data:`NB201_EDGES` order: op names, or indices into :data:`NB201_OPS`."""
        if isinstance(ops, str) or not isinstance(ops, Iterable):
            raise UserError(
                f"NB201 ops must be a sequence of {len(NB201_EDGES)} op names, got {type(ops).__name__}; "
                f"use NB201Arch.parse() for an arch string"
            )
        names = []
        for op in ops:
            if isinstance(op, str):
                names.append(op)
                continue
            try:
                i = operator.index(op)  # ints, numpy/torch integer scalars
            except TypeError:
                raise UserError(
                    f"NB201 op must be a name or an index 0..{len(NB201_OPS) - 1}, got {op!r}"
                ) from None
            if isinstance(op, bool) or not 0 <= i < len(NB201_OPS):
                raise UserError(f"NB201 op index {op!r} out of range; use 0..{len(NB201_OPS) - 1} ({', '.join(NB201_OPS)})")
            names.append(NB201_OPS[i])
        return cls(tuple(names))

    @classmethod
    def parse(cls, text: str) -> NB201Arch:
        """Parse ``'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'`` (surrounding whitespace is ignored)."""
        if not isinstance(text, str):
            raise UserError(f"NB201 arch must be a string, got {type(text).__name__}; pass a string like {_FORMAT}")
        s = text.strip()
        if not s:
            raise UserError(f"empty NB201 arch string; expected {_FORMAT}")
        nodes = s.split("+")
        if len(nodes) != _N_NODES:
            raise _bad(s, f"found {len(nodes)} node group(s) separated by '+', need {_N_NODES}")
        ops: list[str] = []
        for node, part in enumerate(nodes, start=1):
            if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
                raise _bad(s, f"node {node} group {_show(part, 60)} must start and end with '|'")
            tokens = part[1:-1].split("|")
            if len(tokens) != node:
                raise _bad(s, f"node {node} has {len(tokens)} input edge(s), need {node}")
            for src, tok in enumerate(tokens):
                op, sep, idx = tok.rpartition("~")
                if not sep:
                    raise _bad(s, f"edge {_show(tok, 40)} of node {node} is not 'op~index'")
                if idx != str(src):
                    raise _bad(s, f"edge {_show(tok, 40)} of node {node} has source index {_show(idx, 20)}, need {src}")
                if op not in NB201_OPS:
                    raise _bad(s, f"unknown op {_show(op, 40)} on edge {node}<-{src}")
                ops.append(op)
        return cls(tuple(ops))

    def __str__(self) -> str:
        parts, k = [], 0
        for node in range(1, _N_NODES + 1):
            parts.append("|" + "|".join(f"{self.ops[k + src]}~{src}" for src in range(node)) + "|")
            k += node
        return "+".join(parts)

    def count(self, op: str) -> int:
        """Number of edges that carry ``op``."""
        if op not in NB201_OPS:
            raise UserError(f"unknown NB201 op {op!r}; use one of {', '.join(NB201_OPS)}")
        return self.ops.count(op)


@dataclass(frozen=True)
class NB201Result:
    """Benchmark row: 200-epoch test accuracies (%, seed means), params (M) and mult-adds (M; the
    benchmark's "FLOPs" column, which counts multiply-adds: it equals
    :func:`noisydarts.evaluation.count_multadds` of the network)."""

    index: int
    arch: str
    cifar10_test: float
    cifar100_test: float
    imagenet16_test: float
    params_m: float
    multadds_m: float

    @property
    def flops_m(self) -> float:
        """The benchmark's name for :attr:`multadds_m` (kept for older code)."""
        return self.multadds_m

    def to_dict(self) -> dict:
        """Keys: index, arch, cifar10_test, cifar100_test, imagenet16_test, params_m, multadds_m."""
        return dataclasses.asdict(self)


def _corrupt(why: str) -> UserError:
    return UserError(
        f"packaged NB201 table {_ASSET} is unusable ({why}); reinstall noisydarts "
        f"or rebuild it with 'python scripts/build_nb201_table.py'"
    )


@functools.lru_cache(maxsize=1)
def _load() -> tuple[tuple[NB201Result, ...], dict[str, int]]:
    """Read the gz table once: (rows by index, arch string -> index)."""
    try:
        raw = gzip.decompress(_ASSET.read_bytes())
        reader = csv.reader(io.StringIO(raw.decode("utf-8")))
        header = next(reader, None)
        if header != _HEADER:
            raise _corrupt(f"header {header}, expected {_HEADER}")
        rows = tuple(
            NB201Result(i, a, float(c10), float(c100), float(im16), float(p), float(f))
            for i, (a, c10, c100, im16, p, f) in enumerate(reader)
        )
    except FileNotFoundError:
        raise _corrupt("file not found") from None
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:  # bad gzip, bad field count/number
        raise _corrupt(f"{type(exc).__name__}: {exc}") from None
    index = {r.arch: r.index for r in rows}
    if len(rows) != _N_ARCHS or len(index) != _N_ARCHS:
        raise _corrupt(f"{len(rows)} rows / {len(index)} distinct archs, expected {_N_ARCHS}")
    return rows, index


def lookup(arch: str | NB201Arch) -> NB201Result:
    """Benchmark result of a cell given as an arch string or :class:`NB201Arch`."""
    rows, index = _load()
    if isinstance(arch, str):
        i = index.get(arch.strip())
        if i is not None:
            return rows[i]
        arch = NB201Arch.parse(arch)  # raises UserError saying what is malformed
    elif not isinstance(arch, NB201Arch):
        raise UserError(f"NB201 arch must be a string or NB201Arch, got {type(arch).__name__}; pass a string like {_FORMAT}")
    key = str(arch)
    i = index.get(key)
    if i is None:  # every well-formed cell is in a complete table
        raise _corrupt(f"arch {key} is missing")
    return rows[i]


def by_index(i: int) -> NB201Result:
    """Benchmark row ``i`` (0..15624, NB201 / NATS-Bench index order)."""
    try:
        if isinstance(i, bool):
            raise TypeError
        k = operator.index(i)
    except TypeError:
        raise UserError(f"NB201 index must be an integer 0..{_N_ARCHS - 1}, got {i!r}") from None
    if not 0 <= k < _N_ARCHS:
        raise UserError(f"NB201 index {i!r} out of range; use 0..{_N_ARCHS - 1}")
    return _load()[0][k]


def table() -> list[NB201Result]:
    """All 15,625 rows in index order (a new list; the rows themselves are immutable)."""
    return list(_load()[0])


def format_result(r: NB201Result) -> str:
    """Short human-readable multi-line summary of one benchmark row."""
    return "\n".join(
        [
            f"NB201 index:     {r.index}",
            f"arch:            {r.arch}",
            f"CIFAR-10 test:   {r.cifar10_test:.2f} %",
            f"CIFAR-100 test:  {r.cifar100_test:.2f} %",
            f"ImageNet16-120:  {r.imagenet16_test:.2f} % (test)",
            f"params:          {r.params_m:.4f} M",
            f"mult-adds:       {r.multadds_m:.2f} M",
        ]
    )
