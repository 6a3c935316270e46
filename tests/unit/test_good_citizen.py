"""Installed, the plugin changes nothing for a suite that did not ask for it.

A project's own fixtures named like ours work exactly as with ``-p no:attnperf``, with and without
``--attnperf``; loading the plugin (and ``pytest --help``, ``attnperf --help``/show/diff/memory)
imports no torch, transformers, matplotlib or NVML.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fast_run import FAST_OPTIONS

from pytest_attnperf.fixtures import BENCHMARK_FIXTURES
from pytest_attnperf.plugin import SKIP_REASON

HEAVY = ("torch", "transformers", "matplotlib", "pynvml")
OUR_FIXTURE_NAMES = sorted(BENCHMARK_FIXTURES | {"gpu_info"})


def _outcomes(result: pytest.RunResult) -> dict[str, str]:
    """test id -> passed/failed/skipped/error, from the -v lines ("test_x.py::test_y PASSED")."""
    outcomes: dict[str, str] = {}
    for line in result.outlines:
        match = re.match(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR)\b", line)
        if match:
            outcomes[match.group(1)] = match.group(2).lower()
    return outcomes


def _run_both_ways(pytester: pytest.Pytester, *extra: str) -> tuple[dict[str, str], dict[str, str]]:
    with_plugin = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *extra)
    without_plugin = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:attnperf", "-v")
    assert without_plugin.ret == 0, without_plugin.stdout.str()
    return _outcomes(with_plugin), _outcomes(without_plugin)


@pytest.mark.slow
@pytest.mark.parametrize("with_attnperf", [False, True], ids=["plain", "attnperf"])
def test_a_projects_own_fixtures_of_our_names_are_left_alone(pytester: pytest.Pytester, with_attnperf: bool) -> None:
    """Each of our fixture names, defined (and parametrized) by the project itself, behaves as without the plugin."""
    conftest = ["import pytest"]
    tests = []
    for name in OUR_FIXTURE_NAMES:
        conftest.append(f"@pytest.fixture(params=[1, 2])\ndef {name}(request):\n    return request.param * 10\n")
        tests.append(f"def test_own_{name}({name}):\n    assert {name} in (10, 20)\n")
    pytester.makeconftest("\n\n".join(conftest))
    pytester.makepyfile(test_project="\n\n".join(tests))
    extra = ("--attnperf", *FAST_OPTIONS) if with_attnperf else ()
    with_plugin, without_plugin = _run_both_ways(pytester, *extra)
    expected = {f"test_project.py::test_own_{name}[{n}]": "passed" for name in OUR_FIXTURE_NAMES for n in (1, 2)}
    assert with_plugin == without_plugin == expected


@pytest.mark.slow
def test_a_projects_own_qkv_next_to_our_backend_is_still_theirs(pytester: pytest.Pytester) -> None:
    """A test that takes our attn_backend and their qkv is a benchmark (ours) but gets their qkv."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def qkv():
            return "theirs"
        """
    )
    pytester.makepyfile(
        test_project="""
        def test_mixed(attn_backend, qkv):
            assert qkv == "theirs"

        def test_theirs(qkv):
            assert qkv == "theirs"
        """
    )
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "-rs")
    outcomes = _outcomes(plain)
    assert outcomes.pop("test_project.py::test_theirs") == "passed"
    # Our attn_backend makes test_mixed a benchmark: one case per backend, all skipped without --attnperf.
    assert outcomes, plain.stdout.str()
    assert set(outcomes.values()) == {"skipped"}, outcomes
    assert all(test_id.startswith("test_project.py::test_mixed[") for test_id in outcomes)
    assert SKIP_REASON in plain.stdout.str()
    measured = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "--attnperf", *FAST_OPTIONS)
    assert _outcomes(measured) == {
        "test_project.py::test_mixed[eager]": "passed",
        "test_project.py::test_theirs": "passed",
    }


def _imported_after(code: str, cwd: Path) -> list[str]:
    """Which heavy modules are in sys.modules after running ``code`` in a fresh interpreter."""
    probe = (
        textwrap.dedent(code) + f"\nimport sys\nprint('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120)
    marker = [line for line in completed.stdout.splitlines() if line.startswith("HEAVY=")]
    assert marker, completed.stdout + completed.stderr
    return [name for name in marker[-1].removeprefix("HEAVY=").split(",") if name]


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["-q", "-p", "no:cacheprovider", "test_ok.py"], id="one-test-suite"),
        pytest.param(["--help"], id="help"),
        pytest.param(["--markers"], id="markers"),
        pytest.param(["-q", "-p", "no:cacheprovider", "--co", "test_ok.py"], id="collect-only"),
    ],
)
def test_loading_the_plugin_imports_nothing_heavy(tmp_path: Path, arguments: list[str]) -> None:
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    assert True\n", encoding="utf-8")
    code = f"""
        import contextlib, io, pytest
        with contextlib.redirect_stdout(io.StringIO()):
            pytest.main({arguments!r})
        import pytest_attnperf.plugin  # the plugin really was loaded
        """
    assert _imported_after(code, tmp_path) == []


def test_the_markers_are_registered_without_importing_torch(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")
    assert "@pytest.mark.attnperf_latency(" in result.stdout.str()


BASELINE = """\
schema_version: 1
device: {name: Test GPU}
environment: {torch: 2.11.0}
entries:
  t.py::test[eager-1K]: {backend: eager, mode: forward, fits: true, latency_ms: {median: 1.0}, peak_bytes: 100}
"""


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["--help"], id="help"),
        pytest.param(["show", "{file}"], id="show"),
        pytest.param(["diff", "{file}", "{file}"], id="diff"),
        pytest.param(["memory", "--model", "llama-2-70b"], id="memory"),
    ],
)
def test_attnperf_commands_that_need_no_device_import_no_torch(tmp_path: Path, command: list[str]) -> None:
    baseline = tmp_path / "b.yaml"
    baseline.write_text(BASELINE, encoding="utf-8")
    arguments = [part.format(file=baseline) for part in command]
    code = f"""
        import contextlib, io
        from pytest_attnperf.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main({arguments!r})
        """
    assert _imported_after(code, tmp_path) == []


TORCH_FREE_MODULES = (
    "pytest_attnperf",
    "pytest_attnperf.plugin",
    "pytest_attnperf.fixtures",
    "pytest_attnperf.session",
    "pytest_attnperf.session.state",
    "pytest_attnperf.session.cost",
    "pytest_attnperf.session.update_process",
    "pytest_attnperf.runs.stored",
    "pytest_attnperf.runs.compare",
    "pytest_attnperf.runs.exports",
    "pytest_attnperf.runs.merge",
    "pytest_attnperf.runs.history",
    "pytest_attnperf.runs.drift",
    "pytest_attnperf.session.case_gate",
    "pytest_attnperf.session.report",
    "pytest_attnperf.cli",
    "pytest_attnperf.cli.commands",
    "pytest_attnperf.cli.reports",
    "pytest_attnperf.cli.common",
    "pytest_attnperf.cli.env",
    "pytest_attnperf.cli.baselines",
    "pytest_attnperf.spec.shapes",
    "pytest_attnperf.spec.dtypes",
    "pytest_attnperf.spec.units",
    "pytest_attnperf.spec.options",
    "pytest_attnperf.spec.settings",
    "pytest_attnperf.spec.option_values",
    "pytest_attnperf.spec.marks",
    "pytest_attnperf.spec.device_info",
    "pytest_attnperf.spec.presets",
    "pytest_attnperf.spec.workloads",
    "pytest_attnperf.gate.checks",
    "pytest_attnperf.gate.evaluate",
    "pytest_attnperf.gate.statistics",
    "pytest_attnperf.gate.baselines",
    "pytest_attnperf.gate.results",
    "pytest_attnperf.gate.baseline_schema",
    "pytest_attnperf.gate.baseline_reader",
    "pytest_attnperf.gate.baseline_limits",
    "pytest_attnperf.gate.normalise",
    "pytest_attnperf.gate.latency",
    "pytest_attnperf.gate.recording",
    "pytest_attnperf.gate.dispatch",
    "pytest_attnperf.gate.identity",
    "pytest_attnperf.measure.sampling",
    "pytest_attnperf.session.calibration",
    "pytest_attnperf.session.deferral",
    "pytest_attnperf.session.baseline_update",
    "pytest_attnperf.session.output_paths",
    "pytest_attnperf.session.rootdir_guard",
    "pytest_attnperf.backends.registry",
    "pytest_attnperf.backends.protocol",
    "pytest_attnperf.session.end",
    "pytest_attnperf.cli.project_settings",
    "pytest_attnperf.study.document",
    "pytest_attnperf.study.markdown",
    "pytest_attnperf.study.cells",
    "pytest_attnperf.study.decode_markdown",
    "pytest_attnperf.study.decode_plan",
    "pytest_attnperf.study.output",
    "pytest_attnperf.study.plan",
    "pytest_attnperf.study.configs",
    "pytest_attnperf.study.resume",
    "pytest_attnperf.study.memory_calculator",
    "pytest_attnperf.study.timelines",
    "pytest_attnperf.study.allocator_model",
    "pytest_attnperf.study.peak_model",
)


def test_the_ground_floor_imports_no_torch(tmp_path: Path) -> None:
    assert _imported_after("\n".join(f"import {module}" for module in TORCH_FREE_MODULES), tmp_path) == []


def test_pytests_fixture_resolution_is_where_we_read_it(pytester: pytest.Pytester) -> None:
    """plugin_fixture_names reads pytest internals that have no public accessor: fail loudly if they move."""
    pytester.makeconftest(
        """
        import pytest
        from pytest_attnperf.fixtures import plugin_fixture_names

        SEEN = {}

        def pytest_generate_tests(metafunc):
            SEEN["metafunc"] = plugin_fixture_names(metafunc._arg2fixturedefs)

        def pytest_collection_modifyitems(items):
            SEEN["item"] = plugin_fixture_names(items[0]._fixtureinfo.name2fixturedefs)
            assert "gpu_info" in SEEN["metafunc"] and "gpu_info" in SEEN["item"], SEEN
        """
    )
    pytester.makepyfile(test_one="def test_one(gpu_info):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--co", "-q")
    assert result.ret == 0, result.stdout.str()
