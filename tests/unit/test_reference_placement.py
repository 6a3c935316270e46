"""benchmarks/experiments/reference_placement.py: the live trials judged with the reading before or after a case."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import experiment

from pytest_attnperf.gate.results import flat_record

GATE = "benchmarks/gate_validation/test_live_gate.py::test_gate"
SWINGS = [0.97, 0.97, 1.03, 1.03] * 8


def _record(
    row: str, median: float, clock: float, before: float, after: float | None, trial: int | None = None, stages: int = 1
) -> dict:
    suffix = "" if trial is None else f"-t{trial}"
    readings = {"reference": {"ms": 0.2, "clock_mhz": before}}
    if after is not None:
        readings["reference_after"] = {"ms": 0.2, "clock_mhz": after}
    return flat_record(
        test_id=f"{GATE}[flash-attn-16K-{row}{suffix}]",
        backend="flash-attn",
        device="GPU",
        device_slug="gpu",
        mode="forward",
        shape=None,
        seqlen=16384,
        fits=True,
        median_ms=median,
        # time follows the clock (beta 1), which moves by 6 % within the run: enough blocks for beta to be fitted
        samples_ms=[median / swing * (1 + 0.001 * (index * 7 % 5 - 2)) for index, swing in enumerate(SWINGS)],
        clock_mhz=[clock * swing for swing in SWINGS],
        gpu=readings,
        stages=[{"stage": stage + 1, "ratio": 1.0} for stage in range(stages if trial is not None else 0)],
    ).flat()


def _report(path: Path, records: list[dict]) -> None:
    path.write_text(json.dumps({"schema": "attnperf-results/2", "results": records}), encoding="utf-8")


@pytest.fixture
def placement() -> Iterator[ModuleType]:
    with experiment("reference_placement") as module:
        yield module


def test_each_placement_rebuilds_the_baselines_and_judges_the_trials_again(
    tmp_path: Path, placement: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "record").mkdir()
    (tmp_path / "raw").mkdir()
    for run, median in enumerate((1.0, 1.002, 0.998), start=1):
        records = [
            _record("unchanged", median, 1800.0, 1500.0, 1400.0),
            _record("power", median, 1800.0, 1500.0, 1400.0),
        ]
        _report(tmp_path / "record" / f"report-run{run}.json", records)
    # A power-heavier kernel: its clock fell 5 %. The reading before it is x0.90 of the record's (the full 3 % band
    # credited: passed); the one after it reads as at recording (nothing credited): caught only with that one.
    trials = [
        _record("unchanged", 1.0, 1800.0, 1350.0, 1400.0, trial=0),
        _record("power", 1.05, 1800.0 / 1.05, 1350.0, 1400.0, trial=0),
        # measured again (ambiguous at first): its record holds the last measurement only, so it is counted apart
        _record("power", 1.0, 1800.0, 1350.0, 1400.0, trial=1, stages=2),
        _record("plus5", 1.06, 1800.0, 1350.0, 1400.0, trial=0, stages=2),  # a row all of whose items were
    ]
    _report(tmp_path / "raw" / "trials-000-001.json", trials)
    assert placement.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in out.splitlines()}
    assert "| flash-attn-16K | power | ok 1 | ambiguous 1 | 1 |" in out, out  # ambiguous: the plugin measures again
    assert "| flash-attn-16K | unchanged | ok 1 | ok 1 | 0 |" in out
    assert "| flash-attn-16K | plus5 | – | – | 1 |" in out  # ... measured again is listed, none judged
    assert rows[("flash-attn-16K", "1")].startswith("| flash-attn-16K | 1 | x1.000 | x0.900 | – | x1.000 | – |")


def test_a_folder_without_reports_is_refused_by_name(tmp_path: Path, placement: ModuleType) -> None:
    with pytest.raises(SystemExit, match="a gate_live stage's output"):
        placement.main([str(tmp_path)])


def test_a_run_without_readings_after_its_cases_is_refused(tmp_path: Path, placement: ModuleType) -> None:
    (tmp_path / "record").mkdir()
    (tmp_path / "raw").mkdir()
    _report(tmp_path / "record" / "report-run1.json", [_record("unchanged", 1.0, 1800.0, 1500.0, None)])
    _report(tmp_path / "raw" / "trials-000-000.json", [_record("unchanged", 1.0, 1800.0, 1500.0, None, trial=0)])
    with pytest.raises(SystemExit, match="not made with --attnperf-machine-reference=adjacent"):
        placement.main([str(tmp_path)])


def test_a_damaged_report_is_named(tmp_path: Path, placement: ModuleType) -> None:
    (tmp_path / "record").mkdir()
    (tmp_path / "record" / "report-run1.json.gz").write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(SystemExit, match=r"report-run1\.json\.gz"):
        placement.main([str(tmp_path)])


def test_a_record_that_is_no_live_validation_item_is_named(tmp_path: Path, placement: ModuleType) -> None:
    (tmp_path / "record").mkdir()
    record = {
        **_record("unchanged", 1.0, 1800.0, 1500.0, 1400.0),
        "test_id": "tests/suite/t.py::test_forward[eager-1K]",
    }
    _report(tmp_path / "record" / "report-run1.json", [record])
    with pytest.raises(SystemExit, match=r"report-run1\.json: .*is not an id of test_gate"):
        placement.main([str(tmp_path)])
