"""The linter and the type checker run with the tests, so one command checks everything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "ruff", "check", "pytest_attnperf", "tests", "benchmarks"], id="ruff"),
        pytest.param(
            [sys.executable, "-m", "ruff", "format", "--check", "pytest_attnperf", "tests", "benchmarks"], id="format"
        ),
        pytest.param([sys.executable, "-m", "mypy"], id="mypy", marks=pytest.mark.slow),  # a minute and more
    ],
)
def test_static_check_passes(command: list[str]) -> None:
    if shutil.which(command[2]) is None and subprocess.run([*command[:3], "--version"], capture_output=True).returncode:
        pytest.fail(f"{command[2]} is not installed: pip install -e '.[dev]'")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command[2:])} failed:\n{result.stdout}\n{result.stderr}"


def test_every_module_does_one_job_in_at_most_450_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "pytest_attnperf").rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert not long, f"split these modules: {long}"
