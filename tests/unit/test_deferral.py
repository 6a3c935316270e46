"""An ambiguous case is measured again at the end of the session, after a cool-down, and reported once.

The measurements are scripted (``measure.case.measure`` replaced: every case is measured there), so each stage's ratio is exact: the
baseline is 1 ms from one run, which gates at 4.1 % (the prior spread alone); a first measurement
of x1.05 is ambiguous, x1.5 a clear regression.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fast_run import CPU, FAST_OPTIONS

import pytest_attnperf.measure.case as measuring  # imported before any pytester snapshot, so the patch holds
from pytest_attnperf.gate.baselines import BaselineEntry, baseline_path, merge_entries
from pytest_attnperf.measure.measurement import Measurement
from pytest_attnperf.measure.timing import Timing

TESTS = """
    import pytest

    @pytest.mark.attnperf_latency()
    def test_gated(attnperf):
        attnperf.measure_workload(lambda: None, name="workload")

    def test_after():
        pass
"""
ARGS = ("--attnperf", *FAST_OPTIONS, "--junitxml=junit.xml", "--attnperf-json=attnperf.json", "-rA")


def _baseline(pytester: pytest.Pytester) -> None:
    entry = BaselineEntry("workload", None, "forward", {"median": 1.0}, 100, True, "", {})
    path = baseline_path(pytester.path / "baselines", CPU.slug)
    merge_entries(path, {"name": CPU.name, "slug": CPU.slug}, {}, {"test_x.py::test_gated": entry})


@pytest.fixture
def scripted(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The medians the measurements return, in order (the last one repeats)."""
    medians: list[float] = []
    calls = iter(range(1000))

    def fake_measure(*_: object, **__: object) -> Measurement:
        index = next(calls)
        median = medians[min(index, len(medians) - 1)]
        return Measurement(Timing(samples_ms=(median,) * 10, clock="fake"), 100, None, None)

    monkeypatch.setattr(measuring, "measure", fake_measure)
    pytester.makepyfile(test_x=TESTS)
    _baseline(pytester)
    return medians


def _junit(pytester: pytest.Pytester) -> list[tuple[str, str]]:
    cases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    return [
        (case.get("name", ""), next((child.tag for child in case if child.tag != "properties"), "passed"))
        for case in cases
    ]


def _record(pytester: pytest.Pytester) -> dict[str, object]:
    (record,) = json.loads((pytester.path / "attnperf.json").read_text(encoding="utf-8"))["results"]
    return dict(record)


@pytest.mark.parametrize(
    ("medians", "outcome", "verdicts"),
    [
        ([1.05, 1.06], "failure", ["ambiguous", "regression"]),
        ([1.05, 0.99], "passed", ["ambiguous", "pass"]),
        ([1.05, 1.035, 1.03], "passed", ["ambiguous", "ambiguous", "pass"]),
        ([1.05, 1.035, 1.05], "failure", ["ambiguous", "ambiguous", "regression"]),
    ],
)
def test_an_ambiguous_case_is_decided_at_the_end_and_reported_once(
    pytester: pytest.Pytester, scripted: list[float], medians: list[float], outcome: str, verdicts: list[str]
) -> None:
    scripted.extend(medians)
    result = pytester.runpytest_inprocess(*ARGS)
    assert _junit(pytester) == [("test_after", "passed"), ("test_gated", outcome)]  # held, then reported once
    record = _record(pytester)
    assert [stage["verdict"] for stage in record["stages"]] == verdicts  # type: ignore[union-attr]
    assert record["first_median_ms"] == 1.05
    lines = [line for line in result.outlines if line.startswith(("PASSED", "FAILED"))]
    assert [line.split()[1] for line in lines] == ["test_x.py::test_after", "test_x.py::test_gated"]
    if outcome == "passed":
        result.stdout.fnmatch_lines(["*test_gated: the first measurement (x1.05) was not confirmed after a cool-down"])
    else:
        ratios = ", ".join(f"x{value:.3f}" for value in medians)
        result.stdout.fnmatch_lines(
            [f"*measured {len(medians)} times, the later ones at the end of the session after a cool-down: {ratios}*"]
        )


def test_a_clear_regression_is_not_held(pytester: pytest.Pytester, scripted: list[float]) -> None:
    scripted.append(1.5)
    pytester.runpytest_inprocess(*ARGS)
    assert _junit(pytester) == [("test_gated", "failure"), ("test_after", "passed")]


def test_a_deferred_case_appears_once_in_pytest_benchmark(pytester: pytest.Pytester, scripted: list[float]) -> None:
    scripted.extend([1.05, 1.0])
    pytester.runpytest_inprocess(*ARGS, "--benchmark-json=bench.json")
    benchmarks = json.loads((pytester.path / "bench.json").read_text(encoding="utf-8"))["benchmarks"]
    assert [entry["fullname"] for entry in benchmarks] == ["test_x.py::test_gated"]
    assert benchmarks[0]["stats"]["median"] == pytest.approx(1e-3)  # the deciding measurement's samples


def test_when_another_plugin_runs_the_protocol_the_case_is_confirmed_in_place(
    pytester: pytest.Pytester, scripted: list[float]
) -> None:
    pytester.makeconftest(
        """
        import pytest
        from _pytest.runner import runtestprotocol

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_protocol(item, nextitem):
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
            runtestprotocol(item, nextitem=nextitem)
            item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
            return True
        """
    )
    scripted.extend([1.05, 1.06])
    pytester.runpytest_inprocess(*ARGS)
    assert _junit(pytester) == [("test_gated", "failure"), ("test_after", "passed")]
    assert [stage["verdict"] for stage in _record(pytester)["stages"]] == ["ambiguous", "regression"]  # type: ignore[union-attr]


XDIST_CONFTEST = """
import os
from pytest_attnperf.measure.measurement import Measurement
from pytest_attnperf.measure.timing import Timing
import pytest_attnperf.measure.case as measuring

COUNT = [0]

def fake_measure(*_, **__):
    medians = [1.05, 1.06]
    median = medians[min(COUNT[0], len(medians) - 1)]
    COUNT[0] += 1
    return Measurement(Timing(samples_ms=(median,) * 10, clock="fake"), 100, None, None)

measuring.measure = fake_measure  # the one measuring path (measure/case.py)
"""


@pytest.mark.slow
def test_under_xdist_a_deferred_case_is_reported_once(pytester: pytest.Pytester) -> None:
    """Two CPU workers: the worker that holds the case re-measures it after its loop; the controller logs it once."""
    pytester.makeconftest(XDIST_CONFTEST)
    pytester.makepyfile(test_x=TESTS)
    _baseline(pytester)
    result = pytester.runpytest_subprocess(*ARGS, "-n", "2")
    result.assert_outcomes(passed=1, failed=1)
    assert sorted(_junit(pytester)) == [("test_after", "passed"), ("test_gated", "failure")]
    assert [stage["verdict"] for stage in _record(pytester)["stages"]] == ["ambiguous", "regression"]  # type: ignore[union-attr]
    assert Path(pytester.path / "junit.xml").read_text(encoding="utf-8").count('name="test_gated"') == 1


def test_a_held_first_run_and_its_cool_down_are_in_the_runs_cost(
    pytester: pytest.Pytester, scripted: list[float]
) -> None:
    """The first run of a held item is never logged (its re-run is): the cost block counts it apart, so the
    run's phases still add up to its wall time."""
    from benchmark_scripts import load_script

    scripted.extend([1.05, 0.99])
    pytester.runpytest_inprocess(*ARGS)
    document = json.loads((pytester.path / "attnperf.json").read_text(encoding="utf-8"))
    block = document["cost"]
    assert block["tests"] == 2  # the held item once: its re-run
    assert block["held_s"] > 0
    assert block["cool_down_s"] >= 0  # no GPU to wait for here
    cost = load_script("gate_cost").cost_record(document)
    assert cost["phases_s"]["held_first_runs"] == pytest.approx(block["held_s"], abs=1e-3)
    assert cost["startup_s"] + sum(cost["phases_s"].values()) == pytest.approx(cost["wall_s"], abs=0.01)
