"""What the plugin loads into a pytest run that does not use it: the options and the marker texts, not
the marker parsers, the shapes, the presets or YAML (the load tax, benchmarks/load_tax.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NOT_AT_LOAD = (
    "yaml",
    "torch",
    "pytest_attnperf.spec.marks",
    "pytest_attnperf.spec.shapes",
    "pytest_attnperf.spec.presets",
    "pytest_attnperf.gate.results",
)
PROBE = """
import json, sys, pytest
code = pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]])
print(json.dumps({"code": int(code), "modules": sorted(sys.modules)}))
"""


def _run(folder: Path, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=folder, capture_output=True, text=True, check=False, timeout=300
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_suite_without_the_plugins_marks_loads_only_what_every_run_needs(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    assert True\n", encoding="utf-8")
    result = _run(tmp_path, "test_ok.py")
    modules = set(result["modules"])  # type: ignore[call-overload]
    assert result["code"] == 0
    assert "pytest_attnperf.plugin" in modules
    assert modules.isdisjoint(NOT_AT_LOAD), sorted(modules.intersection(NOT_AT_LOAD))


def test_a_suite_with_an_attnperf_mark_loads_the_parsers_and_still_validates(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (tmp_path / "test_marked.py").write_text(
        "import pytest\n\n@pytest.mark.attnperf_latency(tolerance='ten percent')\ndef test_x():\n    pass\n",
        encoding="utf-8",
    )
    result = _run(tmp_path, "test_marked.py")
    assert result["code"] == 4  # a usage error: the bad mark is still refused at collection
    assert "pytest_attnperf.spec.marks" in result["modules"]  # type: ignore[operator]
