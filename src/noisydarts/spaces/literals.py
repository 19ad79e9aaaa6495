"""Genotype values from text and JSON, read strictly: parsed, never evaluated.

The literature prints DARTS genotypes as Python (``Genotype(normal=[('sep_conv_3x3', 1), ...],
normal_concat=range(2, 6), ...)``). :func:`literal` reads exactly that subset from the syntax
tree: lists and tuples of string and integer constants, and ``range(a[, b[, c]])`` with integer
constants (at most :data:`MAX_RANGE` values). Anything else (an operator, a name, a call, a
comprehension) is refused in one line instead of being evaluated. :func:`genotype_fields` checks
the types of a parsed or JSON genotype before it is built: ``(op, input)`` pairs of a string and
an integer, concat lists of integers (booleans and floats are not integers here).
"""

from __future__ import annotations

import ast

from ..errors import UserError

#: The longest ``range(...)`` read (a genotype concat list has a handful of nodes).
MAX_RANGE = 64
_WHAT = "only lists of ('op', input) pairs, lists of integers and range(a, b) are read; nothing is evaluated"


def _show(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # noqa: BLE001 - only for the message
        text = type(node).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _int_constant(node: ast.AST) -> int | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int_constant(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def literal(node: ast.AST, field: str):
    """The value of ``node`` if it is one of the accepted literals, else a :class:`UserError`."""
    number = _int_constant(node)
    if number is not None:
        return number
    if isinstance(node, ast.Constant):  # a constant is harmless; its type is checked by the caller
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [literal(e, field) for e in node.elts]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords and 1 <= len(node.args) <= 3):
        args = [_int_constant(a) for a in node.args]
        if None not in args and (len(args) < 3 or args[2] != 0):
            values = range(*args)
            if len(values) > MAX_RANGE:
                raise UserError(f"genotype field {field!r}: {_show(node)} has {len(values)} values; a genotype "
                                f"lists at most {MAX_RANGE}")
            return list(values)
    raise UserError(f"genotype field {field!r}: {_show(node)!r} is not a literal ({_WHAT})")


def parse_call(text: str, name: str, example: str, fields=None) -> dict:
    """The keyword arguments of ``name(key=literal, ...)`` text (the form papers print genotypes
    in), each read with :func:`literal`; a module prefix (``genotypes.Genotype(...)``) is allowed.
    ``fields``: the keyword names accepted (None: any)."""
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise UserError(f"cannot parse {name} text ({getattr(e, 'msg', None) or type(e).__name__}): "
                        f"expected {example}") from e
    func = getattr(call, "func", None)
    if not (isinstance(call, ast.Call) and getattr(func, "id", getattr(func, "attr", "")) == name):
        raise UserError(f"{name} text must look like {example}")
    if call.args or any(kw.arg is None or (fields is not None and kw.arg not in fields) for kw in call.keywords):
        raise UserError(f"{name} text takes the fields {', '.join(fields or ())} by name: {example}")
    return {kw.arg: literal(kw.value, kw.arg) for kw in call.keywords}


def _int(value, where: str) -> int:
    if type(value) is not int:
        raise UserError(f"{where} must be an integer, got {value!r}")
    return value


def edge_list(value, field: str) -> tuple[tuple[str, int], ...]:
    """``[[op, input], ...]`` as a tuple of ``(str, int)`` pairs."""
    if not isinstance(value, (list, tuple)):
        raise UserError(f"genotype field {field!r} must be a list of [op_name, input_index] pairs, got {value!r}")
    edges = []
    for k, edge in enumerate(value):
        if not isinstance(edge, (list, tuple)) or len(edge) != 2 or not isinstance(edge[0], str):
            raise UserError(f"edge {k} of genotype field {field!r} must be an [op_name, input_index] pair, "
                            f"got {edge!r}")
        edges.append((edge[0], _int(edge[1], f"the input of edge {k} of genotype field {field!r}")))
    return tuple(edges)


def int_list(value, field: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise UserError(f"genotype field {field!r} must be a list of node indices, got {value!r}")
    return tuple(_int(v, f"genotype field {field!r}[{i}]") for i, v in enumerate(value))


def genotype_fields(d: dict, fields=("normal", "normal_concat", "reduce", "reduce_concat")) -> dict:
    """The fields of a DARTS genotype, type-checked: edge lists and concat lists."""
    return {k: int_list(d[k], k) if k.endswith("_concat") else edge_list(d[k], k) for k in fields}
