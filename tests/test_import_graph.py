"""The packages' imports form no circle, and the tools import no test.

Read with ``ast``, never imported. An edge ``a -> b`` is any ``import`` or ``from ... import`` in module
``a`` of ``worldmodels/`` or ``model_free/`` that names module ``b`` of those packages, wherever it
stands: at module level, inside a function (a deferred import still makes ``a`` need ``b``) or under
``if TYPE_CHECKING`` (annotations are a dependency too). ``from p import x`` is an edge to ``p.x``
when ``x`` is a submodule, else to ``p`` (the package's ``__init__``). Importing ``p.q`` also runs
``p/__init__.py``, but that implicit edge is not counted: a package's ``__init__`` re-exporting its own
submodules is not a circle unless a submodule imports the ``__init__`` back, which is an explicit
edge and is counted.

    ROOT=/some/checkout pytest tests/test_import_graph.py   # another checkout's graph
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(os.environ.get("ROOT", Path(__file__).resolve().parent.parent))
PACKAGES = ("worldmodels", "model_free")


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """(base module, names imported from it) of every import statement, relative ones resolved."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            out.append((base, [alias.name for alias in node.names]))
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    graph = {}
    for module, path in known.items():
        edges = set()
        for base, names in imported_names(module, path):
            if not names and base in known:
                edges.add(base)
            for name in names:
                edges.add(f"{base}.{name}" if f"{base}.{name}" in known else base)
        graph[module] = {m for m in edges if m in known and m != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan), as a path."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, component) + [f"({len(component)} modules tangled: {', '.join(sorted(component))})"]
            for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest circle through the component's first module, by breadth-first search."""
    start = min(component)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & component):
            if w == start:
                return path + [start]
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return sorted(component)


def test_no_import_circle():
    found = circles(import_graph(ROOT))
    assert not found, "import circles: " + "; ".join(" -> ".join(c[:-1]) + " " + c[-1] for c in found)


def test_tools_import_no_test():
    offending = []
    for path in sorted((ROOT / "tools").glob("*.py")):
        text = path.read_text()
        for base, names in imported_names(path.stem, path):
            if base.split(".")[0] in {"tests", "conftest"} or base.startswith("test_") or "tests" in names:
                offending.append(f"{path.name} imports {base or names}")
        if "sys.path" in text and '"tests"' in text:
            offending.append(f"{path.name} puts tests/ on sys.path")
    assert not offending, "; ".join(offending)
