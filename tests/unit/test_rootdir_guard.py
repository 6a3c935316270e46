"""`--attnperf-baselines DIR` (a space) must not move pytest's rootdir, and with it every test id."""

from __future__ import annotations

from pathlib import Path

import pytest
from fast_run import FAST_OPTIONS

from pytest_attnperf.session.rootdir_guard import values_given_apart
from pytest_attnperf.spec.options import VALUED_FLAGS

FAST = ("--attnperf", *FAST_OPTIONS)


def test_values_given_apart() -> None:
    flags = {"--attnperf-baselines", "--attnperf-json"}
    args = [
        "--attnperf-baselines",
        "b",
        "--attnperf-json=r.json",
        "tests",
        "--attnperf-json",
        "-x",
        "--",
        "--attnperf-json",
        "z",
    ]
    assert values_given_apart(args, flags) == [("--attnperf-baselines", "b")]
    assert values_given_apart(["--attnperf-baselines"], flags) == []
    assert {"--attnperf-baselines", "--attnperf-json", "--attnperf-seqlens"} <= VALUED_FLAGS
    assert "--attnperf-update" not in VALUED_FLAGS  # a flag takes no value


def _project(pytester: pytest.Pytester) -> Path:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_gate="def test_ok():\n    pass\n")
    return pytester.path


def test_a_value_outside_the_project_that_moves_the_rootdir_is_refused(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # pytest picks the rootdir before it loads plugins: DIR after a space counted as a test path, and with no
    # ini file to anchor it the rootdir became the common ancestor of the project and DIR: every id changed.
    project = pytester.path
    pytester.makepyfile(test_gate="def test_ok():\n    pass\n")
    outside = tmp_path_factory.mktemp("shared-baselines")
    result = pytester.runpytest_inprocess("--attnperf-baselines", str(outside), "test_gate.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    error = result.stderr.str()
    assert (
        f"ERROR: --attnperf-baselines {outside}: written with a space, pytest took the value for a test path" in error
    )
    assert f"(from {project})" in error
    assert f"Write --attnperf-baselines={outside}" in error
    # The '=' spelling is the fix, and keeps the ids.
    fixed = pytester.runpytest_inprocess(f"--attnperf-baselines={outside}", "test_gate.py", "-v")
    assert fixed.ret == pytest.ExitCode.OK
    fixed.stdout.fnmatch_lines(["test_gate.py::test_ok PASSED*"])


def test_a_value_that_leaves_the_rootdir_where_it_was_is_accepted(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.mkdir("mybl")
    result = pytester.runpytest_inprocess("--attnperf-baselines", "mybl", "-v")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["test_gate.py::test_ok PASSED*"])
    assert f"rootdir: {pytester.path}" in result.stdout.str()


def test_an_ini_file_found_through_the_value_is_refused(pytester: pytest.Pytester) -> None:
    # No ini file in the project: pytest found the one inside DIR and took its folder for the rootdir.
    pytester.makepyfile(test_gate="def test_ok():\n    pass\n")
    (pytester.mkdir("elsewhere") / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    result = pytester.runpytest_inprocess("--attnperf-json", "elsewhere", "test_gate.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--attnperf-json elsewhere: written with a space" in result.stderr.str()


def test_a_value_that_is_no_path_is_harmless(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = pytester.runpytest_inprocess("--attnperf-backends", "eager", "--attnperf-seqlens", "64")
    assert result.ret == pytest.ExitCode.OK
