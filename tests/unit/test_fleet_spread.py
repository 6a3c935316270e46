"""benchmarks/experiments/fleet_spread.py: the unit-to-unit spread by step length and the fleet term's fit."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import experiment


@pytest.fixture
def fleet_spread() -> Iterator[ModuleType]:
    with experiment("fleet_spread") as module:
        yield module


def _report(path: Path, unit: str, medians: dict[str, float]) -> None:
    results = [{"test_id": f"tests/suite/test_attention.py::{case}", "median_ms": ms} for case, ms in medians.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump({"device": {"uuid": unit}, "results": results}, handle)


def test_a_constant_offset_on_short_steps_is_fitted_in_microseconds(
    tmp_path: Path, fleet_spread: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {f"test_case[{index}]": 0.01 * (1 + index) for index in range(10)}  # 10 us to 100 us
    for run in (1, 2, 3):
        _report(tmp_path / "record" / f"report-run{run}.json.gz", "GPU-A", cases)
    slower = {case: ms + (0.002 if index % 2 else -0.002) for index, (case, ms) in enumerate(cases.items())}
    _report(tmp_path / "unit-b" / "gated-1.json.gz", "GPU-B", slower)  # +-2 us on every step
    assert fleet_spread.main([str(tmp_path / "record"), str(tmp_path / "unit-b")]) == 0
    out = capsys.readouterr().out
    assert "against the recording unit GPU-A" in out
    assert "1 other units, 10 case medians" in out
    assert "| under 40 us | 3 | 2.00 us |" in out
    fitted = float(out.split("1.2 %: c = ")[1].split(" us")[0])
    assert 1.8 < fitted < 2.1  # the constant, not a share
    assert "- GPU-B: c = " in out


def test_a_record_folder_of_two_units_is_refused(tmp_path: Path, fleet_spread: ModuleType) -> None:
    _report(tmp_path / "record" / "report-run1.json.gz", "GPU-A", {"test_case[0]": 1.0})
    _report(tmp_path / "record" / "report-run2.json.gz", "GPU-B", {"test_case[0]": 1.0})
    with pytest.raises(SystemExit) as exit_info:
        fleet_spread.main([str(tmp_path / "record"), str(tmp_path)])
    assert exit_info.value.code == 2
