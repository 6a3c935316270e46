"""benchmarks/experiments/warmup_tail_replay.py: a steady warm-up's last blocks against the samples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import experiment


@pytest.fixture
def replay() -> Iterator[ModuleType]:
    with experiment("warmup_tail_replay") as module:
        yield module


def _record(test: str, warmup: list[float], samples: list[float], steady: bool = True) -> dict[str, object]:
    return {"test_id": f"t.py::{test}", "warmup_ms": warmup, "samples_ms": samples, "timing_info": {"steady": steady}}


def test_blocks_follow_the_warm_up_rule(replay: ModuleType) -> None:
    # a long kernel is a block per sample; short ones fill a block at 2 ms or 16 samples
    assert replay.blocks([5.0, 5.0]) == [[5.0], [5.0]]
    assert replay.blocks([1.0, 1.5, 0.5]) == [[1.0, 1.5]]  # the trailing partial block is not a block
    assert len(replay.blocks([0.01] * 40)) == 2


def test_a_warm_up_still_at_boost_shows_as_a_shift_by_kernel_length(
    tmp_path: Path, replay: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # six blocks of a 20 ms kernel ending faster (boost) than the samples (cap): the tail pulls the median down
    long = _record("long", [20.0] * 3 + [19.0] * 3, [20.0, 20.1, 20.2, 20.3, 20.4])
    short = _record("short", [0.05] * 16 * 6, [0.05] * 50)
    unsteady = _record("unsteady", [20.0] * 6, [30.0] * 5, steady=False)  # left out: its warm-up never settled
    (tmp_path / "run.json").write_text(json.dumps({"results": [long, short, unsteady]}))
    assert replay.main([str(tmp_path / "run.json"), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 steady cases" in out
    assert "| >= 10 ms | 1 | 0.74% | 0.74% | 0.74% | 0.06 |" in out  # 19, 19, 19, 20, 20.1, ...: 20.05 vs 20.2
    assert "| 0-0.1 ms | 1 | 0.00% |" in out
    assert "| long | 20.200 | 3 | 5 | -0.74% |" in out


def test_reports_without_steady_cases_are_a_usage_error(tmp_path: Path, replay: ModuleType) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"results": []}))
    with pytest.raises(SystemExit):
        replay.main([str(tmp_path / "run.json")])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit, match="not a JSON report"):
        replay.main([str(tmp_path / "bad.json")])
