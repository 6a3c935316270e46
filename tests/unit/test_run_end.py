"""The end of a run: its steps in order, each returning what it did, and the exit status set in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_attnperf.gate.baselines import baseline_path, load_baseline
from pytest_attnperf.gate.results import CaseRecord, flat_record
from pytest_attnperf.session.end import RunEnd, finish_run
from pytest_attnperf.session.output_paths import shown
from pytest_attnperf.session.report import RunReport
from pytest_attnperf.session.state import AttnPerfSession
from pytest_attnperf.spec.settings import Settings, resolve_settings


def _result(test_id: str = "t.py::test[eager-64]") -> CaseRecord:
    return flat_record(
        test_id,
        "eager",
        "NVIDIA H200",
        "nvidia-h200",
        "forward",
        {"heads": 2},
        64,
        median_ms=1.0,
        samples_ms=[1.0, 1.01, 0.99],
        peak_bytes=1 << 20,
        device_info={"name": "NVIDIA H200", "slug": "nvidia-h200"},
    )


def _settings(tmp_path: Path, **cli: Any) -> Settings:
    return resolve_settings({"attnperf": True, **cli}, {}, rootdir=tmp_path, invocation_dir=tmp_path)


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)  # the Markdown summary goes there when set


def test_the_steps_run_in_order_and_the_reports_see_what_the_update_did(tmp_path: Path) -> None:
    settings = _settings(tmp_path, attnperf_update=True, attnperf_json="report.json", attnperf_report="study")
    seen: list[RunEnd] = []
    studies: list[Path] = []

    def report_of(end: RunEnd) -> RunReport:
        seen.append(end)
        return RunReport(settings, [_result()], {"name": "NVIDIA H200"}, "baselines", changes=list(end.changes))

    def write_study(folder: Path) -> list[Path]:
        studies.append(folder)
        return [folder / "README.md"]

    path_of = lambda slug: baseline_path(settings.baselines_dir, slug)  # noqa: E731
    end = finish_run(settings, [_result()], baseline_path_of=path_of, report_of=report_of, write_study=write_study)
    assert [change.test_id for change in end.changes] == ["t.py::test[eager-64]"]
    assert [step.changes for step in seen] == [end.changes]  # the report files were written after the update
    assert end.written_paths == (tmp_path / "report.json", tmp_path / "study" / "README.md")
    assert studies == [tmp_path / "study"]
    assert (end.update_errors, end.output_errors, end.failed) == ((), (), False)
    written = load_baseline(path_of("nvidia-h200"))
    assert written is not None
    assert list(written.entries) == ["t.py::test[eager-64]"]


def test_a_failed_step_is_said_and_fails_the_run_and_the_steps_after_it_still_run(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("", encoding="utf-8")
    settings = _settings(tmp_path, attnperf_update=True, attnperf_report="study")

    def no_study(folder: Path) -> list[Path]:
        raise PermissionError(13, "Permission denied")

    end = finish_run(
        settings,
        [_result()],
        baseline_path_of=lambda slug: tmp_path / "not-a-folder" / f"{slug}.yaml",
        report_of=lambda end: RunReport(settings, [], {}, "baselines"),
        write_study=no_study,
    )
    assert end.failed
    assert [error for error in end.update_errors if "not-a-folder" in error] == list(end.update_errors) != []
    assert end.output_errors == (
        f"--attnperf-report: cannot write the study to {shown(tmp_path / 'study')}: Permission denied",
    )


def test_the_session_sets_the_exit_status_from_the_run_end(tmp_path: Path) -> None:
    state = AttnPerfSession(_settings(tmp_path, attnperf_update=True), is_worker=False, distributing=True)
    state.results = [_result()]
    session = type("Session", (), {"exitstatus": pytest.ExitCode.OK})()
    state.finish(session)  # type: ignore[arg-type]
    assert session.exitstatus == pytest.ExitCode.OK
    assert state.report().changes == list(state.end.changes) != []
    (tmp_path / "baselines").rename(tmp_path / "moved")
    (tmp_path / "baselines").write_text("", encoding="utf-8")  # the folder is now a file: the update fails
    state.finish(session)  # type: ignore[arg-type]
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED
    assert state.report().update_errors == list(state.end.update_errors) != []
