"""benchmarks/experiments/live_drift.py: the live trials' unchanged drift, the machine's credit and the power."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import experiment


def _record(row: str, trial: int, raw: float, normalised: float, verdict: str, watts: float) -> dict[str, object]:
    return {
        "test_id": f"benchmarks/gate_validation/test_live_gate.py::test_gate[flash-attn-16K-{row}-t{trial}]",
        "latency_ratio": raw,
        "normalised_ratio": normalised,
        "verdict": verdict,
        "gpu": {"burst_power_w": watts},
        "session_gpu_state": {"power_limit_w": 700.0},
    }


@pytest.fixture
def live_drift() -> Iterator[ModuleType]:
    with experiment("live_drift") as module:
        yield module


def test_a_cases_row_says_its_drift_credit_and_power(
    tmp_path: Path, live_drift: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "raw").mkdir()
    records = [
        _record("unchanged", 0, 1.01, 1.00, "ok", 690.0),
        _record("unchanged", 1, 1.04, 1.01, "ok", 710.0),
        _record("power", 0, 1.08, 1.05, "REGRESSION", 700.0),
        _record("power", 1, 1.04, 1.01, "ok", 700.0),
    ]
    (tmp_path / "raw" / "trials-000-001.json").write_text(json.dumps({"results": records}), encoding="utf-8")
    assert live_drift.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "power limit: 700 W" in out
    row = next(line for line in out.splitlines() if line.startswith("| flash-attn-16K"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == ["flash-attn-16K", "2", "x1.025 (x1.010-x1.040)", "x1.030", "x1.060 (x1.040-x1.080)", "1 of 2",
                     "700 (710)"]  # fmt: skip


def test_a_folder_without_reports_is_a_usage_error(tmp_path: Path, live_drift: ModuleType) -> None:
    with pytest.raises(SystemExit) as exit_info:
        live_drift.main([str(tmp_path)])
    assert exit_info.value.code == 2


def test_the_machine_reference_and_the_samples_own_swing_are_tabled_per_case(
    tmp_path: Path, live_drift: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "baselines").mkdir()
    steady = {**_record("unchanged", 0, 1.0, 1.0, "ok", 700.0), "samples_ms": [10.0] * 8}
    steady["gpu"] = {**steady["gpu"], "reference": {"clock_mhz": 1200.0}}  # type: ignore[dict-item]
    swinging = {**_record("unchanged", 1, 1.0, 1.0, "ok", 700.0), "samples_ms": [10.0] * 4 + [10.4] * 4}
    swinging["gpu"] = {**swinging["gpu"], "reference": {"clock_mhz": 1500.0}}  # type: ignore[dict-item]
    (tmp_path / "raw" / "trials-000-001.json").write_text(json.dumps({"results": [steady, swinging]}))
    test_id = "benchmarks/gate_validation/test_live_gate.py::test_gate[flash-attn-16K-unchanged]"
    (tmp_path / "baselines" / "h100.yaml").write_text(f"entries:\n  {test_id}:\n    reference: {{clock_mhz: 1500.0}}\n")
    assert live_drift.main([str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| flash-attn-16K")]
    cells = [cell.strip() for cell in rows[1].strip("|").split("|")]
    # the reference read x0.8 and x1.0 of its baseline's clock; one case's samples moved 4 % between its halves
    assert cells == ["flash-attn-16K", "2", "x0.900 (x0.800-x1.000)", "2.0% (4.0%)"]


def test_a_baseline_file_that_is_not_one_is_named(tmp_path: Path, live_drift: ModuleType) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "baselines").mkdir()
    record = _record("unchanged", 0, 1.0, 1.0, "ok", 700.0)
    (tmp_path / "raw" / "trials-000-000.json").write_text(json.dumps({"results": [record]}))
    (tmp_path / "baselines" / "h100.yaml").write_text("- not\n- a baseline\n")
    with pytest.raises(SystemExit, match=r"h100\.yaml: not a baseline file"):
        live_drift.main([str(tmp_path)])


def test_a_gzipped_raw_report_is_read_like_a_plain_one(
    tmp_path: Path, live_drift: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [_record("unchanged", 0, 1.01, 1.00, "ok", 690.0), _record("unchanged", 1, 1.04, 1.01, "ok", 710.0)]
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    for folder in (plain, packed):
        (folder / "raw").mkdir(parents=True)
    (plain / "raw" / "trials-000-001.json").write_text(json.dumps({"results": records}), encoding="utf-8")
    with gzip.open(packed / "raw" / "trials-000-001.json.gz", "wt", encoding="utf-8") as handle:
        json.dump({"results": records}, handle)
    assert live_drift.main([str(plain)]) == 0
    from_plain = capsys.readouterr().out
    assert live_drift.main([str(packed)]) == 0
    assert capsys.readouterr().out == from_plain.replace(str(plain), str(packed))  # the title names the folder
    assert "| flash-attn-16K" in from_plain
