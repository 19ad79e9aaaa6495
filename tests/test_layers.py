"""The package's layers (docs/design.md): a module imports only from its own package or a lower
layer, function-level imports included, and no imports form a circle.

The rule is checked on the source (the AST), so an import hidden in a function counts as much as
one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "noisydarts"

#: Lowest first. A module of layer n may import from layers <= n; within one layer, only from
#: its own package (``runtime`` may not import ``data``, which shares its layer).
LAYERS = [
    ["_version", "errors"],
    ["config", "presets"],
    ["runtime", "data", "benchmark"],
    ["nn"],
    ["methods"],
    ["spaces"],
    ["models"],
    ["viz"],
    ["search", "train"],
    ["compare"],
    ["cli"],
    ["__main__"],
]
RANK = {top: rank for rank, tops in enumerate(LAYERS) for top in tops}
#: What the package root may hold besides packages (at most 5 modules).
ROOT_MODULES = {"__init__", "__main__", "_version", "errors", "compare"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: set[str]) -> list[str]:
    """The modules of ours that ``node`` imports (names relative to the package root)."""
    if isinstance(node, ast.Import):
        out = []
        for alias in node.names:
            if alias.name == "noisydarts" or alias.name.startswith("noisydarts."):
                out.append(alias.name[len("noisydarts."):] if "." in alias.name else "__init__")
        return out
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        if module == "__init__":
            base = []
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join(base + ([node.module] if node.module else []))
    elif node.module and (node.module == "noisydarts" or node.module.startswith("noisydarts.")):
        target = node.module[len("noisydarts."):] if "." in node.module else ""
    else:
        return []
    # ``from pkg import sub`` runs ``pkg`` first: an edge to the package itself, and to each
    # submodule named (``from .. import darts`` in spaces/amended depends on spaces/__init__).
    # Every import runs the root package's __init__ anyway (it imports only _version).
    out = [target] if target else []
    for alias in node.names:
        sub = f"{target}.{alias.name}" if target else alias.name
        out.append(sub if sub in known else (target or "__init__"))
    return sorted(set(out), key=out.index)


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(t for t in _resolve(name, is_package, node, known) if t != name)
        graph[name] = edges
    return graph


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_layer_table_names_every_top_level_module():
    tops = {_top(m) for m in _modules()} - {"__init__"}
    assert tops <= set(RANK), f"not in LAYERS: {sorted(tops - set(RANK))}"


def test_the_package_root_holds_at_most_five_modules():
    root = {p.stem for p in PACKAGE.glob("*.py")}
    assert root <= ROOT_MODULES and len(root) <= 5, sorted(root)


def test_no_module_imports_from_a_higher_layer_or_a_sibling_package():
    upward = []
    for source, targets in import_graph().items():
        if source == "__init__":
            continue  # the package root's lazy API names everything (by string, on first use)
        for target in targets:
            if target == "__init__":
                upward.append(f"{source} -> noisydarts (the package root)")
                continue
            s, t = _top(source), _top(target)
            if s != t and (RANK[t] > RANK[s] or RANK[t] == RANK[s]):
                upward.append(f"{source} -> {target}")
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each a circle."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    graph = {k: v for k, v in import_graph().items() if k != "__init__"}
    assert not _cycles(graph), "import circles:\n" + "\n".join(" <-> ".join(c) for c in _cycles(graph))


@pytest.mark.parametrize("graph, circles", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_the_circle_finder_finds_circles(graph, circles):
    assert _cycles(graph) == circles


def test_function_level_imports_count(tmp_path):
    """The graph sees an import inside a function body (the way circles used to be hidden)."""
    graph = import_graph()
    assert all(isinstance(v, set) for v in graph.values())
    tree = ast.parse("def f():\n    from ..search import search\n")
    node = tree.body[0].body[0]
    assert _resolve("viz.plots", False, node, {"search"}) == ["search"]
    node = ast.parse("from .. import darts\n").body[0]
    assert _resolve("spaces.amended", True, node, {"spaces.darts"}) == ["spaces", "spaces.darts"]
