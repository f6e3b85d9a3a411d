"""The import graph of pipstorm's own modules has no circle, and the layers point one way.

Every import counts, also the ones inside functions and under ``TYPE_CHECKING``: a circle that
only a local import hides is still two modules that cannot be read, or changed, apart. The
direction between top-level folders and between engine's subpackages is ruff's (banned-api in
nested ruff.toml files); this test holds what ruff cannot see: circles within a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("engine", "clients", "infra", "packages")
#: Installed, the folders are one import package (issue 19); modules are named as installed.
PACKAGE = "pipstorm"
#: A folder with more modules than this directly is a package in disguise (docs/architecture.md).
MAX_MODULES_PER_FOLDER = 12


def _module_name(path: Path) -> str:
    parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in FOLDERS for p in (ROOT / pkg).rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules ``path`` imports; ``from a import b`` names ``a.b`` when that is a module."""
    found: set[str] = set()
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # A relative import (the warm agent's) names its module from this file's package.
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(filter(None, [base, node.module or ""]))
            subs = {f"{module}.{a.name}" for a in node.names} & modules.keys()
            found.update(subs or {module})
    return found & modules.keys()


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_between_pipstorm_modules() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the walk found too few modules to mean anything"
    assert "pipstorm.engine.report.model" in graph["pipstorm.engine.report.markdown"]
    assert "pipstorm.clients.warm.paths" in graph["pipstorm.clients.warm.child"]  # relative
    assert circles(graph) == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("engine.rundir", ("engine.run.", "engine.analysis", "engine.report", "engine.workflows")),
        ("engine.rundir", ("engine.cli",)),
        ("engine.analysis", ("engine.run.", "engine.report", "engine.workflows", "engine.cli")),
        ("engine.report", ("engine.run.", "engine.workflows", "engine.cli")),
        ("engine.run", ("engine.workflows", "engine.cli")),
        ("engine.workflows", ("engine.cli",)),
        ("clients", ("engine", "infra")),
        ("infra", ("engine", "clients")),
        ("packages", ("engine", "clients", "infra")),
    ],
)
def test_layers_point_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    """The same rule as the nested ruff.toml files, over every import (local ones too)."""
    graph = import_graph()
    package = f"{PACKAGE}.{package}"
    forbidden = tuple(f"{PACKAGE}.{name}" for name in forbidden)
    wrong = sorted(
        f"{mod} -> {dep}"
        for mod, deps in graph.items()
        if mod == package or mod.startswith(package + ".")
        for dep in deps
        if dep.startswith(forbidden)
    )
    assert wrong == []


def _top_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_nothing_imports_a_folder_by_its_bare_name() -> None:
    """``import engine`` works inside pytest (the checkout is on its path) but not installed."""
    sources = [p for top in (*FOLDERS, "tests") for p in (ROOT / top).rglob("*.py")]
    wrong = sorted(str(p.relative_to(ROOT)) for p in sources if _top_names(p) & set(FOLDERS))
    assert wrong == []


def test_no_folder_holds_more_than_twelve_modules() -> None:
    """Rooms you can see at a glance: a bigger folder wants subpackages (issue 19)."""
    crowded = {
        str(folder.relative_to(ROOT)): count
        for top in FOLDERS
        for folder in [ROOT / top, *(ROOT / top).rglob("*/")]
        if folder.is_dir()
        and "__pycache__" not in folder.parts
        and (count := len([p for p in folder.glob("*.py") if p.name != "__init__.py"]))
        > MAX_MODULES_PER_FOLDER
    }
    assert crowded == {}


#: A function a reader can hold (issue 19): longer ones become a composition of named steps.
MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_eighty_lines() -> None:
    """Every function and method of the four folders, decorators excluded, docstring included."""
    sources = [p for top in FOLDERS for p in (ROOT / top).rglob("*.py")]
    assert len(sources) > 50
    long = sorted(
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)"
        for path in sources
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    )
    assert long == []
