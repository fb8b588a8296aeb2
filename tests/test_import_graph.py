"""The package's imports form no circle: between modules, or between the rooms (subpackages) that hold them.

Every import counts, wherever it stands: at the top of a module, inside a function, under `TYPE_CHECKING`. An
import placed inside a function to dodge a circle is still a circle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "gmtrouter"
PUBLIC_FACE = {"__init__", "__main__", "api"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports (a name imported from a package counts as that package, or as
    its submodule when the name is one)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in known:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def import_graph() -> nx.DiGraph:
    found = modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(found)
    for name, path in found.items():
        graph.add_edges_from((name, target) for target in imported(path, set(found)) if target != name)
    return graph


def room(module: str) -> str:
    """The subpackage of the package root a module lives in (a module at the root is its own room)."""
    return ".".join(module.split(".")[:2])


def test_no_module_imports_itself_back() -> None:
    graph = import_graph()
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not circles, f"import circles: {circles}"


def test_no_two_rooms_import_each_other() -> None:
    graph = import_graph()
    rooms = nx.DiGraph()
    for source, target in graph.edges:
        # a package's face hands its own modules' names on; it is not an arrow between rooms
        if room(source) != room(target) and not source.endswith("__init__"):
            rooms.add_edge(room(source), room(target), via=(source, target))
    circles = [
        [rooms.edges[a, b]["via"] for a, b in zip(c, [*c[1:], c[0]], strict=True)] for c in nx.simple_cycles(rooms)
    ]
    assert not circles, f"rooms that import each other (module -> module): {circles}"


def test_package_root_holds_only_the_public_face() -> None:
    loose = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem not in PUBLIC_FACE)
    assert not loose, f"modules at the package root beside the public face: {loose}; give each a room"


def test_the_check_finds_a_circle(tmp_path: Path) -> None:
    """The walk sees an import inside a function: the kind that hides a circle."""
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from gmtrouter.api import Router\n    return Router\n", encoding="utf-8")
    assert imported(module, set(modules())) == {"gmtrouter.api"}
