"""The module import graph of our packages, read with `ast`, and the two checks on it.

`tests/test_architecture.py` runs these on the real tree, and first on small synthetic
packages, so a checker that silently sees nothing cannot pass.

Every import form counts: `import a.b`, `from a import b`, relative imports, imports
inside functions and under `if TYPE_CHECKING:`. The house rule is no cycles even for
type-only imports, because a cycle there still means a type lives in the wrong module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

Graph = dict[str, set[str]]


@dataclass(frozen=True)
class ImportEdge:
    """One import of one of our modules by another, with where it is written."""

    importer: str
    imported: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(root, path)] = path
    return found


def _resolve(name: str, known: Mapping[str, Path]) -> str | None:
    """The deepest of our modules that `name` names (`a.b.Thing` -> `a.b`), else None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: Mapping[str, Path]
) -> Iterable[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            target = _resolve(alias.name, known)
            if target is not None:
                yield target
        return
    base = node.module or ""
    if node.level:
        # A relative import counts from the importer's package: the module itself
        # for an __init__.py, its parent otherwise; each extra dot climbs one more.
        package = module.split(".") if is_package else module.split(".")[:-1]
        drop = node.level - 1
        anchor = package[: len(package) - drop] if drop else package
        base = ".".join([*anchor, *([base] if base else [])])
    for alias in node.names:
        # `from a import b` imports module `a.b` when there is one, else a name in `a`.
        target = _resolve(f"{base}.{alias.name}" if base else alias.name, known)
        if target is not None:
            yield target


def import_edges(root: Path, packages: Iterable[str]) -> list[ImportEdge]:
    """Every import between modules of `packages` (directories under `root`)."""
    known = _modules(root, packages)
    edges: list[ImportEdge] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        where = path.relative_to(root)
        # ast.walk, not the module body: imports in functions and under
        # `if TYPE_CHECKING:` are nodes like any other, so they count too.
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges.extend(
                    ImportEdge(module, target, where, node.lineno)
                    for target in _targets(node, module, is_package, known)
                )
    return edges


def import_graph(root: Path, packages: Iterable[str]) -> Graph:
    """Module -> the modules it imports, over every module of `packages`."""
    packages = list(packages)
    graph: Graph = {module: set() for module in _modules(root, packages)}
    for edge in import_edges(root, packages):
        graph[edge.importer].add(edge.imported)
    return graph


def layer_of(module: str) -> str:
    """The unit the dependency table speaks of: the top-level package, or one service."""
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return f"services.{parts[1]}"
    return parts[0]


def upward_imports(
    edges: Iterable[ImportEdge], allowed: Mapping[str, Iterable[str]]
) -> list[ImportEdge]:
    """Imports from one layer into another that `allowed` does not list.

    `allowed` maps a layer to the layers it may import; `services.*`, as a key or a
    value, stands for any one service. A layer may always import itself; a layer missing
    from the table may import nothing of ours, so a new package is placed deliberately.
    """
    bad: list[ImportEdge] = []
    for edge in edges:
        source, target = layer_of(edge.importer), layer_of(edge.imported)
        if source == target:
            continue
        may = set(allowed.get(_wildcard(source), ()))
        if target not in may and _wildcard(target) not in may:
            bad.append(edge)
    return bad


def _wildcard(layer: str) -> str:
    return "services.*" if layer.startswith("services.") else layer


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Each import cycle as a path `[a, b, ..., a]`: one per strongly connected component
    of more than one module, and one per module that imports itself.
    """
    found: list[list[str]] = []
    for component in _components(graph):
        if len(component) == 1:
            (only,) = component
            if only in set(graph.get(only, ())):
                found.append([only, only])
            continue
        found.append(_cycle_within(graph, component))
    return sorted(found)


def _components(graph: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iterative so deep graphs cannot overflow."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                result.append(component)
    return result


def _cycle_within(graph: Mapping[str, Iterable[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, staying inside it."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(set(graph.get(node, ())) & component):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start} in its own component")  # unreachable
