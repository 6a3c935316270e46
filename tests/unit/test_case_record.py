"""The record of one case: versioned, read back by the xdist controller, the JSON report and the stored-run readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_attnperf.gate.results import RECORD_VERSION, CaseResult
from pytest_attnperf.report import RunReport, results_document
from pytest_attnperf.runs.stored import report_from_document
from pytest_attnperf.spec.settings import resolve_settings


def _record(**fields: object) -> CaseResult:
    return CaseResult("t.py::test[x]", "eager", "cpu", "cpu", "forward", None, 64, median_ms=1.0, **fields)  # type: ignore[arg-type]


def test_a_record_carries_its_version_and_reads_back_equal() -> None:
    record = _record(verdicts={"latency": "ok"}, stages=[{"stage": 1, "ratio": 1.0}])
    text = record.to_json()
    assert json.loads(text)["record_version"] == RECORD_VERSION
    assert CaseResult.from_json(text) == record


def test_a_record_written_before_versions_reads_as_version_1() -> None:
    data = json.loads(_record().to_json())
    del data["record_version"]
    assert CaseResult.from_json(json.dumps(data)).record_version == 1


def test_a_newer_record_is_refused_rather_than_misread() -> None:
    data = {**json.loads(_record().to_json()), "record_version": RECORD_VERSION + 1}
    with pytest.raises(ValueError, match=r"record of version 3 \(test 't.py::test\[x\]'\).*upgrade it"):
        CaseResult.from_json(json.dumps(data))


def test_the_json_report_keeps_its_fields_and_the_stored_run_readers_read_it(tmp_path: Path) -> None:
    settings = resolve_settings({"attnperf": True}, {}, rootdir=tmp_path, invocation_dir=tmp_path)
    record = _record(baseline_median_ms=0.5, verdicts={"latency": "REGRESSION"}, outcome="failed")
    document = results_document(RunReport(settings, [record], {"name": "cpu"}, "baselines"))
    assert document["schema"] == "attnperf-results/2"  # a field added, none removed: the schema stays
    (case,) = report_from_document(json.loads(json.dumps(document)), tmp_path / "r.json").cases
    assert case["record_version"] == RECORD_VERSION
    assert case["latency_ratio"] == 2.0
    assert case["verdict"] == "REGRESSION"
    assert set(json.loads(record.to_json())) <= set(case)
