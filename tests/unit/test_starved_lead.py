"""benchmarks/experiments/starved_lead.py: the gated cases whose spans took in the host's launch."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import experiment


@pytest.fixture
def starved_lead() -> Iterator[ModuleType]:
    with experiment("starved_lead") as module:
        yield module


def _record(case: str, host: float, lead: float, spans: list[float], outcome: str = "passed") -> dict[str, object]:
    return {
        "test_id": f"tests/suite/test_transformers.py::{case}",
        "timing_info": {"host_launch_ms": host, "lead_ms": lead, "warmup_calls": 40},
        "samples_ms": spans,
        "median_ms": sorted(spans)[len(spans) // 2],
        "baseline_median_ms": 2.3,
        "outcome": outcome,
    }


def test_a_step_launched_longer_than_its_lead_and_kernels_is_flagged_with_the_rules_lead(
    tmp_path: Path, starved_lead: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "gated_suite"
    folder.mkdir()
    results = [
        _record("test_prefill[flex-1K]", 8.4, 5.0, [2.31] + [5.09] * 9, "failed"),  # the host's: +121 %
        _record("test_prefill[sdpa-32K]", 77.0, 5.0, [110.0] * 10),  # GPU-bound: its kernels hide the launch
        {"test_id": "tests/suite/test_attention.py::test_forward[eager-1K]", "samples_ms": [0.1]},  # CPU: no lead
    ]
    with gzip.open(folder / "gated-1.json.gz", "wt", encoding="utf-8") as handle:
        json.dump({"results": results}, handle)
    (folder / "cost-1.json").write_text("{}", encoding="utf-8")  # not a report

    cases = [starved_lead.lead_case(record) for record in results]
    assert cases[2] is None
    flex, prefill = cases[0], cases[1]
    assert flex["starved"]
    assert flex["failed"]
    assert flex["rule"] == pytest.approx(1.25 * 8.4 + 0.01 - 2.31)
    assert not prefill["starved"]
    assert prefill["rule"] == 5.0
    assert prefill["extra_s"] == 0.0

    table = starved_lead.summarise(starved_lead.reports(folder))
    assert "| gated-1.json.gz | 2 | 1 | 1 | 1 | 0.2 |" in table  # (8.20 - 5.0) ms more lead x 50 calls
    assert "| `test_prefill[flex-1K]` | 1 | 8.40 | 5.00 | 2.31 | 2.21 F | 8.20 |" in table
    assert "sdpa-32K" not in table
