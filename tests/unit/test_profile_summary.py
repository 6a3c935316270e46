"""benchmarks/experiments/profile_summary.py: a cProfile file as two markdown tables, paths shortened."""

from __future__ import annotations

import cProfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import experiment

from pytest_attnperf.spec.shapes import length_id


@pytest.fixture
def profile_summary() -> Iterator[ModuleType]:
    with experiment("profile_summary") as module:
        yield module


def test_a_profile_becomes_its_cumulative_and_own_time_tables(
    tmp_path: Path, profile_summary: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [length_id(n) for n in range(1, 5000)])
    profiler.dump_stats(tmp_path / "run.prof")
    assert profile_summary.main([str(tmp_path / "run.prof"), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Profile of run.prof:")
    cumulative, own = out.split("## Cumulative")[1].split("## Own time")
    # the plugin's function, by its path inside the package (no checkout or site-packages prefix), with its calls
    assert "| `pytest_attnperf/spec/shapes.py:" in cumulative
    assert " length_id` | 4,999 |" in cumulative
    assert 2 <= len([line for line in own.splitlines() if line.startswith("| `")]) <= 5  # --top bounds each table


def test_paths_are_shortened_to_their_package(profile_summary: ModuleType) -> None:
    site = "/usr/lib/python3.12/site-packages/torch/_dynamo/eval_frame.py"
    assert profile_summary.short(site, 12, "f") == "torch/_dynamo/eval_frame.py:12 f"
    assert profile_summary.short("/usr/lib/python3.12/json/decoder.py", 3, "g") == "json/decoder.py:3 g"
    assert profile_summary.short("/root/repo/pytest_attnperf/runner.py", 5, "h") == "pytest_attnperf/runner.py:5 h"
    assert profile_summary.short("~", 0, "<built-in method time.sleep>") == "<built-in method time.sleep>"


def test_a_missing_or_foreign_file_is_a_usage_error(tmp_path: Path, profile_summary: ModuleType) -> None:
    import marshal

    (tmp_path / "text.prof").write_text("not a profile")
    (tmp_path / "list.prof").write_bytes(marshal.dumps([1, 2, 3]))  # marshal, but not a profile's table
    for name in ("absent.prof", "text.prof", "list.prof"):
        with pytest.raises(SystemExit) as exit_info:
            profile_summary.main([str(tmp_path / name)])
        assert exit_info.value.code == 2, name
