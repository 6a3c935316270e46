"""The package's import graph has no circles: each room imports only the rooms below it.

Every ``import`` counts, read with ``ast`` from the source: at module level, inside functions (the lazy
imports that keep torch out of a plain pytest run), and under ``if TYPE_CHECKING:`` (a type-only import
still says which room knows which). The one exception is the package's own ``__init__.py``: the public
facade, whose lazily loaded names sit above every room, so its outgoing imports are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FACADE = "pytest_attnperf"


def module_names(root: Path, package: str) -> dict[str, Path]:
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source (``from .x import y``: x, or x.y)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in known:
                    found.add(submodule)
                elif target in known:
                    found.add(target)
    return found - {name}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    known = module_names(root, package)
    return {name: set() if name == package else imported_modules(name, path, known) for name, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each circle once, as a path that ends where it starts (a depth-first search for back edges)."""
    found: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                found.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_pytest_attnperf_has_no_import_circle() -> None:
    graph = import_graph(ROOT, FACADE)
    assert len(graph) > 50  # the whole package was read
    assert (
        "pytest_attnperf.session.baseline_update" in graph["pytest_attnperf.session.end"]
    )  # function-level imports count
    assert not circles(graph), "import circles: " + "; ".join(" -> ".join(circle) for circle in circles(graph))


def test_a_circle_through_a_function_level_or_type_only_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "house"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hub.py").write_text("from .rooms import end\n")
    (package / "rooms").mkdir()
    (package / "rooms" / "__init__.py").write_text("")
    (package / "rooms" / "end.py").write_text("def finish():\n    from ..hub import state\n")
    (package / "ground.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import hub\nimport house.rooms.end\n"
    )
    graph = import_graph(tmp_path, "house")
    assert graph["house.hub"] == {"house.rooms.end"}
    assert graph["house.ground"] == {"house.hub", "house.rooms.end"}
    assert circles(graph) == [["house.hub", "house.rooms.end", "house.hub"]]


def test_every_folder_of_the_package_is_a_package() -> None:
    """setuptools' find_packages (pyproject.toml) installs only folders with an __init__.py: one without it works
    in this checkout as a namespace package and is missing from a wheel."""
    folders = {path.parent for path in (ROOT / FACADE).rglob("*.py") if "__pycache__" not in path.parts}
    assert sorted(str(folder.relative_to(ROOT)) for folder in folders if not (folder / "__init__.py").is_file()) == []
