"""Every name a script under ``benchmarks/`` or ``examples/`` imports from the package exists there.

Most of those scripts run only on a GPU machine, so nothing on the CPU imports them: a module moved or a
function renamed would surface as an ImportError in the middle of a paid GPU session. Read statically with
``ast`` (no script is run, no torch or triton imported): the module must be a file or package of
``pytest_attnperf``, and each imported name a top-level definition, assignment or import of it, or a submodule.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "pytest_attnperf"
SCRIPT_FOLDERS = ("benchmarks", "examples")


def module_file(module: str) -> Path | None:
    """The source of ``pytest_attnperf.x.y``: x/y.py or x/y/__init__.py; None when neither exists."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_level_names(path: Path) -> set[str]:
    """What ``from module import name`` can take: definitions, assignments and imports at module level (inside
    module-level ``if`` and ``try`` too), and the facade's lazily loaded names (the keys of its ``_WHERE``)."""
    return _defined(ast.parse(path.read_text(encoding="utf-8")).body)


def _defined(statements: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in statements:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            assigned = {name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)}
            names |= assigned
            if "_WHERE" in assigned and isinstance(node.value, ast.Dict):
                names |= {key.value for key in node.value.keys if isinstance(key, ast.Constant)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.If, ast.Try)):
            names |= _defined([*node.body, *node.orelse, *getattr(node, "finalbody", [])])
    return names


def broken_imports(script: Path) -> list[str]:
    """Each package import of ``script`` that does not resolve, as 'line: what'."""
    broken = []
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE and module_file(alias.name) is None:
                    broken.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
            module = node.module or PACKAGE
            source = module_file(module)
            if source is None:
                broken.append(f"{node.lineno}: from {module} (no such module)")
                continue
            defined = top_level_names(source)
            for alias in node.names:
                if alias.name not in defined and module_file(f"{module}.{alias.name}") is None:
                    broken.append(f"{node.lineno}: from {module} import {alias.name}")
    return broken


def scripts() -> list[Path]:
    return sorted(path for folder in SCRIPT_FOLDERS for path in (ROOT / folder).rglob("*.py"))


def test_every_package_import_of_a_script_resolves() -> None:
    found = scripts()
    assert len(found) > 20  # the benchmarks were read
    broken = {str(path.relative_to(ROOT)): problems for path in found if (problems := broken_imports(path))}
    assert not broken, broken


def test_a_moved_module_or_a_renamed_name_is_found(tmp_path: Path) -> None:
    script = tmp_path / "gpu_only.py"
    script.write_text(
        "from pytest_attnperf.gate.statistics import tolerance, no_such_function\n"
        "from pytest_attnperf.no_such_module import anything\n"
        "import pytest_attnperf.measure.no_such\n"
        "from pytest_attnperf.gate import statistics\n"  # a submodule: fine
        "from pytest_attnperf import AttnPerf, NoSuchName\n",  # the facade's lazily loaded names: the keys of _WHERE
        encoding="utf-8",
    )
    assert broken_imports(script) == [
        "1: from pytest_attnperf.gate.statistics import no_such_function",
        "2: from pytest_attnperf.no_such_module (no such module)",
        "3: import pytest_attnperf.measure.no_such",
        "5: from pytest_attnperf import NoSuchName",
    ]
