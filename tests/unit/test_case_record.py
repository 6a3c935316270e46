"""The record of one case: versioned, read back by the xdist controller, the JSON report and the stored-run readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_attnperf.gate.results import (
    RECORD_VERSION,
    CaseIdentity,
    CaseRecord,
    DecisionRecord,
    MeasurementRecord,
    Provenance,
    flat_record,
)
from pytest_attnperf.runs.stored import load_report, report_from_document
from pytest_attnperf.session.report import RunReport, results_document
from pytest_attnperf.spec.settings import resolve_settings

ROOT = Path(__file__).parents[2]


def _record(**fields: object) -> CaseRecord:
    return flat_record("t.py::test[x]", "eager", "cpu", "cpu", "forward", None, 64, median_ms=1.0, **fields)


# A version-2 record as the plugin before the nested record wrote it into item.user_properties (trimmed).
VERSION_2 = {
    "test_id": "t.py::test[x]",
    "backend": "eager",
    "device": "NVIDIA H100 80GB HBM3",
    "device_slug": "nvidia-h100-80gb-hbm3",
    "device_id": "cuda:1",
    "mode": "forward",
    "shape": {"heads": 8},
    "seqlen": 64,
    "median_ms": 1.25,
    "samples_ms": [1.2, 1.25, 1.3],
    "peak_bytes": 4096,
    "baseline_median_ms": 1.0,
    "verdicts": {"latency": "REGRESSION"},
    "stages": [{"stage": 1, "ratio": 1.25}],
    "outcome": "failed",
    "clock": "cuda-events",
    "environment": {"torch": "2.9.0"},
    "plugin_version": "0.9.0",
    "record_version": 2,
}


def test_a_record_is_four_parts_carries_its_version_and_reads_back_equal() -> None:
    record = _record(verdicts={"latency": "ok"}, stages=[{"stage": 1, "ratio": 1.0}], clock="perf_counter")
    data = json.loads(record.to_json())
    assert data["record_version"] == RECORD_VERSION == 3
    assert set(data) == {"identity", "measurement", "decision", "provenance", "record_version"}
    assert data["identity"]["test_id"] == "t.py::test[x]"
    assert data["measurement"]["median_ms"] == 1.0
    assert data["decision"]["verdicts"] == {"latency": "ok"}
    assert data["provenance"]["clock"] == "perf_counter"
    assert CaseRecord.from_json(record.to_json()) == record


def test_a_version_2_record_is_read_by_converting_it_into_its_parts() -> None:
    record = CaseRecord.from_json(json.dumps(VERSION_2))
    assert record.record_version == 2
    assert record.identity == CaseIdentity(
        "t.py::test[x]",
        "eager",
        "NVIDIA H100 80GB HBM3",
        "nvidia-h100-80gb-hbm3",
        "forward",
        {"heads": 8},
        64,
        "cuda:1",
    )
    assert record.measurement == MeasurementRecord(median_ms=1.25, samples_ms=[1.2, 1.25, 1.3], peak_bytes=4096)
    assert record.decision == DecisionRecord(
        verdicts={"latency": "REGRESSION"},
        stages=[{"stage": 1, "ratio": 1.25}],
        outcome="failed",
        baseline_median_ms=1.0,
    )
    assert record.provenance == Provenance(environment={"torch": "2.9.0"}, plugin_version="0.9.0", clock="cuda-events")
    assert record.latency_ratio == 1.25
    assert record.verdict() == "REGRESSION"


def test_a_record_written_before_versions_reads_as_version_1() -> None:
    data = {key: value for key, value in VERSION_2.items() if key != "record_version"}
    record = CaseRecord.from_json(json.dumps({**data, "quantiles_ms": [1.0]}))  # a field version 2 dropped: ignored
    assert record.record_version == 1
    assert record.measurement.median_ms == 1.25


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_a_newer_record_is_refused_rather_than_misread(layout: str) -> None:
    record = _record()
    data = json.loads(record.to_json()) if layout == "nested" else record.flat()
    data["record_version"] = RECORD_VERSION + 1
    with pytest.raises(
        ValueError, match=r"record of version 4 \(test 't.py::test\[x\]'\).*versions 1 to 3.*upgrade it"
    ):
        CaseRecord.from_json(json.dumps(data))


def test_a_field_is_set_in_its_part_and_an_unknown_name_is_refused() -> None:
    record = _record().with_fields(peak_bytes=10, outcome="failed", session_gpu_state={"persistence": True})
    assert (record.measurement.peak_bytes, record.decision.outcome) == (10, "failed")
    assert record.provenance.session_gpu_state == {"persistence": True}
    with pytest.raises(TypeError, match="a case record has no field 'median'"):
        record.with_fields(median=1.0)


def test_the_json_report_keeps_its_fields_and_the_stored_run_readers_read_it(tmp_path: Path) -> None:
    settings = resolve_settings({"attnperf": True}, {}, rootdir=tmp_path, invocation_dir=tmp_path)
    record = _record(baseline_median_ms=0.5, verdicts={"latency": "REGRESSION"}, outcome="failed")
    document = results_document(RunReport(settings, [record], {"name": "cpu"}, "baselines"))
    assert document["schema"] == "attnperf-results/2"  # each case is the record shown flat: the fields stay
    (case,) = report_from_document(json.loads(json.dumps(document)), tmp_path / "r.json").cases
    assert case["record_version"] == RECORD_VERSION
    assert case["median_ms"] == 1.0
    assert case["latency_ratio"] == 2.0
    assert case["verdict"] == "REGRESSION"
    assert set(VERSION_2) <= set(case)  # every field a version-2 record had
    assert CaseRecord.from_dict(case) == record  # and the case reads back as the record


@pytest.mark.parametrize(
    "path", ["tests/data/runs/run-01.json", "docs/results/h100/hf-gate.json", "docs/results/cpu/history/run-01.json"]
)
def test_the_committed_reports_of_older_versions_read_as_records(path: str) -> None:
    report = load_report(ROOT / path)
    records = [CaseRecord.from_dict(case) for case in report.cases]
    assert records
    for case, record in zip(report.cases, records, strict=True):
        assert record.identity.test_id == case["test_id"]
        assert record.measurement.median_ms == case.get("median_ms")
        assert record.verdict() == case["verdict"]


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_a_record_without_its_identity_is_refused_by_name(layout: str) -> None:
    record = _record()
    data = json.loads(record.to_json()) if layout == "nested" else record.flat()
    identity = data["identity"] if layout == "nested" else data
    del identity["device_slug"], identity["mode"]
    with pytest.raises(ValueError, match=r"record without device_slug, mode \(test 't.py::test\[x\]'\): not a case"):
        CaseRecord.from_dict(data)


def test_a_misspelt_field_of_a_record_built_by_name_raises() -> None:
    with pytest.raises(TypeError, match="a case record has no field 'median'"):
        flat_record("t.py::test[x]", "eager", "cpu", "cpu", "forward", None, 64, median=1.0)


def _nested(**changes: object) -> dict[str, object]:
    data: dict[str, object] = json.loads(_record(samples_ms=[1.0, 1.1]).to_json())
    for path, value in changes.items():
        part, _, name = path.partition("__")
        if name:
            data[part][name] = value  # type: ignore[index]
        elif value is None:
            del data[part]
        else:
            data[part] = value
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"measurement__median_ms": "fast"}, r"measurement field 'median_ms' is \"fast\" .*expected float \| None"),
        ({"measurement__samples_ms": [1.0, "x"]}, r"field 'samples_ms' is \[1.0, \"x\"\].*expected list\[float\]"),
        ({"measurement__fits": "no"}, "field 'fits' is \"no\".*expected bool"),
        ({"decision__verdicts": ["ok"]}, r"decision field 'verdicts' is \[\"ok\"\].*expected dict\[str, str\]"),
        ({"identity__test_id": 3}, "identity field 'test_id' is 3 .*expected str"),
        ({"identity__seqlen": 64.5}, "field 'seqlen' is 64.5 .*expected int"),
        ({"measurement__median_ms": float("nan")}, "field 'median_ms' is NaN.*every number finite"),
        ({"provenance__timing_settings": {"rep_ms": float("inf")}}, "field 'timing_settings' is .*Infinity"),
        ({"measurement": None}, "version 3 without its measurement as an object .*all of identity, measurement"),
        ({"decision": [1], "provenance": None}, "without its decision, provenance as an object"),
        ({"record_version": 0}, r"version 0 \(test 't.py::test\[x\]'\): this pytest-attnperf reads versions 1 to 3$"),
        ({"record_version": True}, "version True"),
    ],
)
def test_a_record_with_a_wrong_or_missing_field_is_refused_by_name(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CaseRecord.from_dict(_nested(**changes))


def test_a_record_that_is_no_object_is_refused_and_nan_in_its_json_too() -> None:
    with pytest.raises(ValueError, match="an attnperf record that is a JSON list, not an object"):
        CaseRecord.from_json("[1]")
    text = _record().to_json().replace('"median_ms": 1.0', '"median_ms": NaN')
    with pytest.raises(ValueError, match="'median_ms' is NaN"):
        CaseRecord.from_json(text)
    flat = {**_record().flat(), "peak_bytes": "4 KiB"}  # the flat layout is checked the same way
    with pytest.raises(ValueError, match=r"measurement field 'peak_bytes' is .4 KiB.*expected int"):
        CaseRecord.from_dict(flat)


def test_unknown_fields_are_ignored_and_a_long_sample_list_reads_back() -> None:
    data = _nested(measurement__later_field={"x": 1}, measurement__samples_ms=[1.0] * 100_000)
    data["later_part"] = {}
    record = CaseRecord.from_dict(data)
    assert len(record.measurement.samples_ms or []) == 100_000
