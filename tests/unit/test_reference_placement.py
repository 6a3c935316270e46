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


def _record(row: str, median: float, clock: float, before: float, after: float, trial: int | None = None) -> dict:
    suffix = "" if trial is None else f"-t{trial}"
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
        gpu={"reference": {"ms": 0.2, "clock_mhz": before}, "reference_after": {"ms": 0.2, "clock_mhz": after}},
    ).flat()


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
        (tmp_path / "record" / f"report-run{run}.json").write_text(json.dumps({"results": records}), encoding="utf-8")
    # A power-heavier kernel: its clock fell 5 %. The reading before it is x0.90 of the record's (the full 3 % band
    # credited: passed); the one after it reads as at recording (nothing credited): caught only with that one.
    trials = [
        _record("unchanged", 1.0, 1800.0, 1350.0, 1400.0, trial=0),
        _record("power", 1.05, 1800.0 / 1.05, 1350.0, 1400.0, trial=0),
        _record("power", 1.0, 1800.0, 1350.0, 1400.0, trial=0),  # the same item re-measured: its first counts
    ]
    (tmp_path / "raw" / "trials-000-000.json").write_text(json.dumps({"results": trials}), encoding="utf-8")
    assert placement.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in out.splitlines()}
    assert "| flash-attn-16K | power | ok 1 | ambiguous 1 |" in out, out  # ambiguous: the plugin measures it again
    assert "| flash-attn-16K | unchanged | ok 1 | ok 1 |" in out
    assert rows[("flash-attn-16K", "1")].startswith("| flash-attn-16K | 1 | x1.000 | x0.900 | – | x1.000 | – |")


def test_a_folder_without_reports_is_refused_by_name(tmp_path: Path, placement: ModuleType) -> None:
    with pytest.raises(SystemExit, match="a gate_live stage's output"):
        placement.main([str(tmp_path)])
