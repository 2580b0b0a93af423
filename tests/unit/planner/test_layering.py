"""The planner package's layering: readers and names at the bottom, then the status builder and
the PV changes, then the phases, then the entry point; no import cycles, no module too big."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "operator" / "clusterresync" / "planner"
# What each module may import from the package; a phase may import another phase (no cycles).
BOTTOM = {"objects": set(), "naming": set()}
MIDDLE = {"status": {"objects", "naming"}, "volumes": {"objects", "naming", "status"}}
MAX_LINES = 400


def imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in sorted(PACKAGE.glob("*.py")):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.add(node.module or "__init__")
        out[p.stem] = deps
    return out


def test_lower_layers_import_only_below_them() -> None:
    graph = imports()
    for module, allowed in {**BOTTOM, **MIDDLE}.items():
        assert graph[module] <= allowed, f"{module} imports {sorted(graph[module] - allowed)}"
    for module, deps in graph.items():
        assert "__init__" not in deps, f"{module} imports the package's entry point"


def test_no_import_cycles() -> None:
    graph = imports()

    def visit(module: str, path: tuple[str, ...]) -> None:
        for dep in graph.get(module, set()):
            assert dep not in path, f"import cycle: {' -> '.join((*path, dep))}"
            visit(dep, (*path, dep))

    for module in graph:
        visit(module, (module,))


def test_no_module_is_too_big() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
