"""The live gate validation's driver, without a GPU: its run order and its summary of the plugin's JSON reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "gate_validation"))

import gate_validation_live as live  # noqa: E402
import live_cases  # noqa: E402


def test_each_trial_rotates_the_rows_of_every_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_VALIDATION_CASES", "flash-attn-32K,eager-4K")
    monkeypatch.setenv("GATE_VALIDATION_TRIAL", "1")
    order = live_cases.interleaved()
    assert order[:4] == [("flash-attn-32K", row) for row in ("plus3", "plus5", "power", "unchanged")]
    assert len(order) == 8
    monkeypatch.setenv("GATE_VALIDATION_CASES", "nope")
    with pytest.raises(pytest.UsageError, match="unknown nope"):
        live_cases.selected_cases()


def record(case: str, row: str, raw: float, verdict: str, clock: float = 1500.0) -> dict[str, Any]:
    return {
        "test_id": f"benchmarks/gate_validation/test_live_gate.py::test_gate[{case}-{row}]",
        "stages": [{"raw_ratio": raw, "decided_by": "machine"}],
        "verdicts": {"latency": verdict},
        "verdict": verdict,
        "samples_ms": [raw] * 5,
        "clock_mhz": [clock] * 5,
        "clock_ref_mhz": 1500.0,
        "baseline_median_ms": 1.0,
        "tolerance": 0.03,
        "gpu": {"burst_power_w": 600.0},
    }


def test_the_summary_gives_wall_time_and_cycles_and_counts_verdicts(tmp_path: Path) -> None:
    trials = [
        {
            "trial": index,
            "device": {"name": "GPU", "uuid": "GPU-b"},
            "results": [
                record("flash-attn-32K", "unchanged", 1.0, "ok"),
                record("flash-attn-32K", "plus5", 1.05, "REGRESSION"),
                record("flash-attn-32K", "plus3", 1.03, "ok" if index else "REGRESSION"),
                record("flash-attn-32K", "power", 1.08, "REGRESSION", clock=1500.0 / 1.08),
            ],
        }
        for index in range(2)
    ]
    summary = live.summarise(trials, ["flash-attn-32K"], tmp_path)
    rows = {row["row"]: row for row in summary["sensitivity"]}
    assert rows["plus5"]["injected"] == pytest.approx(0.05)
    assert rows["plus5"]["detected"] == 2
    assert rows["plus3"]["detected"] == 1
    assert rows["power"]["injected"] == pytest.approx(0.08)  # wall time, against its own (rounded-input) baseline
    assert rows["power"]["injected_cycles"] == pytest.approx(0.0, abs=1e-9)  # the same cycles
    assert rows["power"]["false_alarms"] == 0
    assert summary["gated_runs"] == {"runs": 2, "failed": 0, "through_pytest": True}
    assert summary["gated_on"] == ["GPU-b"]
    text = live.markdown(summary)
    assert "| flash-attn 32K | power | +8.0 % |" in text
    assert "recorded on (no baseline file), gated on GPU-b" in text
