"""The module import graph, read from the source: no circles, and services that import only `shared`.

Imports are read with ``ast`` from every module under ``shared/``, ``services/`` and ``bench/``,
wherever they stand (a function-level import closes a circle as surely as a top-level one, it only
hides it); relative imports are resolved. Importing ``a.b.c`` also runs the packages ``a`` and
``a.b``, so those count as imported too, except the importer's own enclosing packages. Imports
under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("shared", "services", "bench")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            for other in node.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _import_nodes(node)


def imported_names(module: str, source: str, is_package: bool = False) -> set[str]:
    """Dotted names ``module`` imports (modules, or modules plus an attribute: trimmed by the caller)."""
    names: set[str] = set()
    for node in _import_nodes(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        if node.level:  # relative: from the importer's package, one level up per extra dot
            package = module.split(".") if is_package else module.split(".")[:-1]
            base = package[: len(package) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        names.add(target)
        names.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules importing it runs (its own enclosing packages excluded)."""
    modules = sources()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        edges: set[str] = set()
        for name in imported_names(module, path.read_text(), path.name == "__init__.py"):
            parts = name.split(".")
            edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[module] = {m for m in edges if m in modules and m != module and m not in own}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_reader_sees_function_level_and_relative_imports() -> None:
    assert {"services.risk.crash", "services.risk.hedge"} <= import_graph()["services.risk.service"]
    tree = "def f():\n    from .b import c\n    import x.y\nif TYPE_CHECKING:\n    import hidden\n"
    assert imported_names("pkg.sub.a", tree) == {"pkg.sub.b", "pkg.sub.b.c", "x.y"}
    assert imported_names("pkg.sub", "from . import a\nfrom .. import top\n", is_package=True) == {
        "pkg.sub",
        "pkg.sub.a",
        "pkg",
        "pkg.top",
    }


def test_no_import_circles() -> None:
    cycles = find_cycles(import_graph())
    assert cycles == [], "import circles (each a set of modules that import one another): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_services_import_only_shared_and_themselves() -> None:
    crossings = []
    for module, imports in import_graph().items():
        parts = module.split(".")
        if parts[0] != "services" or len(parts) < 2:
            continue
        own = f"services.{parts[1]}"
        crossings += [
            f"{module} imports {m}"
            for m in sorted(imports)
            if m.startswith("services.") and not (m == own or m.startswith(own + "."))
        ]
    assert crossings == []


def test_shared_imports_no_service() -> None:
    """`shared` is the common library: the CLI reaches services by dotted name, loaded when invoked."""
    graph = import_graph()
    crossings = [f"{m} imports {i}" for m in graph if m.split(".")[0] == "shared" for i in sorted(graph[m])]
    assert [c for c in crossings if " imports services" in c] == []
