"""Every path a run writes to is checked before it measures; what fails only at the end is named, not a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fast_run import CPU, FAST_OPTIONS

from pytest_attnperf.gate.baselines import baseline_path, load_baseline
from pytest_attnperf.session.output_paths import (
    OutputPathError,
    check_baselines_folder,
    check_file_target,
    check_folder_target,
    check_output_paths,
    markdown_target,
)
from pytest_attnperf.spec.settings import resolve_settings

FAST = ("--attnperf", *FAST_OPTIONS)
TEST = """
    import pytest

    @pytest.mark.attnperf_latency()
    def test_forward(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
"""
LONG = "a" * 300  # longer than any file system's name limit (255 bytes)


def _problem(check: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(OutputPathError) as error:
        check(*args, **kwargs)  # type: ignore[operator]
    return str(error.value)


def test_a_writable_file_target_is_checked_without_leaving_anything(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "deep" / "r.json"
    check_file_target(target, "--attnperf-json")
    assert not target.exists()  # only the folders the write would make anyway
    assert target.parent.is_dir()
    existing = tmp_path / "summary.md"
    existing.write_text("kept\n", encoding="utf-8")
    check_file_target(existing, "--attnperf-markdown")
    assert existing.read_text(encoding="utf-8") == "kept\n"


@pytest.mark.parametrize(
    ("name", "setup", "reason"),
    [
        (".", None, "it is a folder; give a file name"),
        ("test_a.py/out.json", "file", "Not a directory"),
        (LONG, None, "File name too long"),
        ("loop", "loop", "Too many levels of symbolic links"),
    ],
)
def test_an_unwritable_file_target_is_named(tmp_path: Path, name: str, setup: str | None, reason: str) -> None:
    if setup == "file":
        (tmp_path / "test_a.py").write_text("", encoding="utf-8")
    if setup == "loop":
        (tmp_path / "loop").symlink_to("loop")
    target = tmp_path / name
    problem = _problem(check_file_target, target, "--attnperf-json")
    assert problem.startswith(f"--attnperf-json: cannot write {target}")
    assert reason in problem


def test_an_unwritable_folder_target_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    assert _problem(check_folder_target, tmp_path / "file", "--attnperf-report") == (
        f"--attnperf-report: cannot use {tmp_path / 'file'} as a folder: it is a file"
    )
    assert _problem(check_folder_target, tmp_path / "file" / "study", "--attnperf-report") == (
        f"--attnperf-report: cannot use the folder {tmp_path / 'file' / 'study'}: Not a directory"
    )
    check_folder_target(tmp_path / "new" / "study", "--attnperf-report")
    assert (tmp_path / "new" / "study").is_dir()
    assert list((tmp_path / "new" / "study").iterdir()) == []


def test_a_folder_that_refuses_writes_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As root, permission bits stop nothing: stand in for a read-only folder by failing the write itself.
    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.TemporaryFile", read_only)
    assert _problem(check_folder_target, tmp_path, "--attnperf-report") == (
        f"--attnperf-report: cannot write in the folder {tmp_path}: Permission denied"
    )


def test_the_baselines_folder(tmp_path: Path) -> None:
    check_baselines_folder(tmp_path / "missing", "baselines", updating=False)  # no baselines yet: not an error
    assert not (tmp_path / "missing").exists()
    check_baselines_folder(tmp_path / "missing", "baselines", updating=True)  # made, as the update would
    assert (tmp_path / "missing").is_dir()
    (tmp_path / "test_a.py").write_text("", encoding="utf-8")
    for updating in (False, True):
        assert _problem(check_baselines_folder, tmp_path / "test_a.py", "baselines", updating=updating) == (
            f"baselines: cannot use {tmp_path / 'test_a.py'} as the baselines folder: it is a file, not a folder"
        )
        assert "Not a directory" in _problem(
            check_baselines_folder, tmp_path / "test_a.py" / "sub", "baselines", updating=updating
        )
        assert "File name too long" in _problem(check_baselines_folder, tmp_path / LONG, "baselines", updating=updating)
    (tmp_path / "dangling").symlink_to("nowhere")
    for updating in (False, True):
        assert "is a symbolic link to a missing folder" in _problem(
            check_baselines_folder, tmp_path / "dangling", "baselines", updating=updating
        )


def test_the_markdown_target_and_where_it_came_from(tmp_path: Path) -> None:
    plain = resolve_settings({"attnperf": True}, {}, rootdir=tmp_path, invocation_dir=tmp_path)
    assert markdown_target(plain, {}) is None
    assert markdown_target(plain, {"GITHUB_STEP_SUMMARY": " "}) is None
    assert markdown_target(plain, {"GITHUB_STEP_SUMMARY": "/s.md"}) == (Path("/s.md"), "$GITHUB_STEP_SUMMARY")
    given = resolve_settings(
        {"attnperf": True, "attnperf_markdown": "m.md"}, {}, rootdir=tmp_path, invocation_dir=tmp_path
    )
    assert markdown_target(given, {"GITHUB_STEP_SUMMARY": "/s.md"}) == (tmp_path / "m.md", "--attnperf-markdown")
    (tmp_path / "d").mkdir()
    problem = _problem(check_output_paths, plain, {"GITHUB_STEP_SUMMARY": str(tmp_path / "d")})
    assert problem == f"$GITHUB_STEP_SUMMARY: cannot write {tmp_path / 'd'}: it is a folder; give a file name"


@pytest.mark.parametrize(
    ("option", "expected"),
    [  # paths inside the current folder are shown relative to it, as the user wrote them
        ("--attnperf-json=.", "ERROR: --attnperf-json: cannot write .: it is a folder; give a file name"),
        ("--attnperf-markdown=test_gate.py/s.md", "ERROR: --attnperf-markdown: cannot write test_gate.py/s.md: Not a"),
        (
            "--attnperf-report=test_gate.py",
            "ERROR: --attnperf-report: cannot use test_gate.py as a folder: it is a file",
        ),
        (
            "--attnperf-baselines=test_gate.py",
            "ERROR: the baselines folder (--attnperf-baselines): cannot use test_gate.py as the baselines folder",
        ),
    ],
)
def test_an_unwritable_output_stops_the_run_before_it_measures(
    pytester: pytest.Pytester, option: str, expected: str
) -> None:
    # It used to measure everything, then end with a traceback (or, for the baselines, gate against nothing).
    pytester.makepyfile(test_gate=TEST)
    result = pytester.runpytest_inprocess(*FAST, option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str()
    assert "passed" not in result.stdout.str()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_report_that_fails_at_the_end_is_named_and_fails_the_run(pytester: pytest.Pytester) -> None:
    # /dev/full opens fine and refuses the write: what no early check can see.
    pytester.makepyfile(test_gate=TEST)
    result = pytester.runpytest_inprocess(*FAST, "--attnperf-json=/dev/full", "--attnperf-markdown=s.md")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output
    assert "attnperf: --attnperf-json: cannot write /dev/full: No space left on device" in output
    assert f"attnperf: wrote {pytester.path / 's.md'}" in output  # the other report is still written
    assert "test_forward[eager-64]" in (pytester.path / "s.md").read_text(encoding="utf-8")


def test_json_report_of_a_good_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=TEST)
    result = pytester.runpytest_inprocess(*FAST, "--attnperf-json=out/r.json")
    assert result.ret == pytest.ExitCode.OK
    document = json.loads((pytester.path / "out" / "r.json").read_text(encoding="utf-8"))
    assert [case["test_id"] for case in document["results"]] == ["test_gate.py::test_forward[eager-64]"]


def test_a_baseline_file_that_is_a_symbolic_link_is_read_and_updated_through_it(pytester: pytest.Pytester) -> None:
    # One file shared by several folders: it used to be refused as "outside baselines", blaming the GPU's name
    # (and the atomic rename of an update would have replaced the link by a regular file).
    pytester.makepyfile(test_gate=TEST)
    link = baseline_path(pytester.path / "baselines", CPU.slug)
    link.parent.mkdir()
    shared = pytester.mkdir("shared") / link.name
    link.symlink_to(Path("..") / "shared" / link.name)
    first = pytester.runpytest_inprocess(*FAST, "--attnperf-update")
    assert first.ret == pytest.ExitCode.OK, first.stdout.str() + first.stderr.str()
    assert link.is_symlink()
    written = load_baseline(shared)
    assert written is not None
    assert list(written.entries) == ["test_gate.py::test_forward[eager-64]"]
    # The point is reading through the link; a loaded CPU's latency must not decide it (a 2-core machine under load
    # once gave 3 samples of a 0.2 ms kernel a 20 ms median: a time slice, past any tolerance), so either verdict
    # is a run that read the entry through the link and gated the case against it.
    gated = pytester.runpytest_inprocess(*FAST, "--attnperf-latency-tolerance=1000%")
    assert gated.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), gated.stdout.str()
    gated.stdout.fnmatch_lines([f"attnperf: baselines baselines/{link.name} (1 entries, *"])
    gated.stdout.fnmatch_lines(["test_forward[[]eager-64[]]  eager * ms * x* x* *"])  # a ratio to the linked entry


def test_a_baseline_file_that_is_a_loop_of_links_is_a_usage_error(pytester: pytest.Pytester) -> None:
    # Path.resolve() raised RuntimeError on it: an INTERNALERROR.
    pytester.makepyfile(test_gate=TEST)
    link = baseline_path(pytester.path / "baselines", CPU.slug)
    link.parent.mkdir()
    link.symlink_to(link.name)
    result = pytester.runpytest_inprocess(*FAST)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "INTERNALERROR" not in result.stdout.str()
    assert "cannot be read: Too many levels of symbolic links" in result.stderr.str()


def test_ctrl_c_while_the_baselines_are_written_is_one_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It used to end the run with a raw KeyboardInterrupt traceback (the files stayed whole).
    import pytest_attnperf.gate.baselines as baselines

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(baselines, "merge_entries", interrupted)
    pytester.makepyfile(test_gate=TEST)
    result = pytester.runpytest_inprocess(*FAST, "--attnperf-update")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert (
        "Exit: attnperf: interrupted (Ctrl-C) while writing the baselines; every baseline file is whole: its old "
        "version, or its new one if it was written before the interrupt" in result.stderr.str()
    )
