"""Schema version 2: several runs per entry, version 1 still read, contradictions and hostile YAML refused,
and nothing the reader would refuse is ever written (issue 12, defects 2 and 9)."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest
import yaml
from fast_run import CPU, FAST_OPTIONS

import pytest_attnperf.gate.baseline_limits as limits
import pytest_attnperf.measure.case as measuring  # imported before any pytester snapshot, so a patch of it holds
from pytest_attnperf.gate.baselines import (
    BaselineEntry,
    BaselineFile,
    BaselineFileError,
    baseline_path,
    load_baseline,
    merge_entries,
    parse_baseline_text,
)
from pytest_attnperf.gate.checks import GateContext
from pytest_attnperf.gate.evaluate import GatePolicy, decide
from pytest_attnperf.gate.results import flat_record
from pytest_attnperf.gate.statistics import geometric_mean, log_spread
from pytest_attnperf.measure.measurement import Measurement
from pytest_attnperf.measure.timing import Timing
from pytest_attnperf.spec.marks import GateMarks, LatencySpec

DEVICE = {"name": "NVIDIA H200", "slug": "nvidia-h200"}
MEDIANS = (1.002, 0.998, 1.01)


def three_runs(**fields: object) -> BaselineEntry:
    values: dict[str, object] = {
        "backend": "sdpa-cudnn",
        "shape": {"heads": 32, "dtype": "float16", "window": [-1, -1]},
        "mode": "forward",
        "latency_ms": {"median": round(geometric_mean(list(MEDIANS)), 4), "raw_median": 1.05, "samples": 30},
        "peak_bytes": 4096,
        "fits": True,
        "recorded_at": "2026-12-01T00:00:00Z",
        "environment": {"torch": "2.13.0"},
        "runs": 3,
        "run_medians_ms": MEDIANS,
        "spread": round(log_spread(list(MEDIANS)) or 0, 5),
        "clock_mhz": 1755.0,
        "beta": 0.93,
        "beta_ci": (0.9, 0.96),
        "energy_mj": 12.5,
        "fingerprint": {"families": ["cudnn_generated_fort_native_sdpa_sm90"], "variant": "0123456789ab", "kernels": 1},
        "gpu_uuids": ("GPU-0000", "GPU-0001"),
        "plugin_version": "0.1.0",
        "timing": {"warmup": "steady", "rep_ms": 100.0, "clock_source": "sm0-timestamps"},
    }
    values.update(fields)
    return BaselineEntry(**values)  # type: ignore[arg-type]


def test_a_three_run_entry_round_trips(tmp_path: Path) -> None:
    original = BaselineFile(tmp_path / "x.yaml", dict(DEVICE), {"torch": "2.13.0"}, {"t::a": three_runs()})
    text = original.to_text()
    assert "schema_version: 2" in text
    assert "&id" not in text  # never anchors: the reader refuses aliases
    assert parse_baseline_text(text, original.path) == original


V1 = """\
schema_version: 1
device: {name: NVIDIA H100}
environment: {torch: 2.11.0}
entries:
  t::a:
    mode: forward
    fits: true
    latency_ms: {median: 0.001, samples: 10, quantiles: [1000000.0, 1000000.0, 1000000.0]}
    peak_bytes: 4096
"""


def test_a_version_1_file_is_read_and_rewritten_as_version_2(tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    path.write_text(V1, encoding="utf-8")
    old = load_baseline(path)
    assert old is not None
    assert old.version == 1
    entry = old.entries["t::a"]
    assert (entry.runs, entry.run_medians_ms, entry.spread, entry.median_ms) == (1, (0.001,), None, 0.001)
    merge_entries(path, DEVICE, {}, {"t::b": three_runs()})
    text = path.read_text(encoding="utf-8")
    assert "schema_version: 2" in text
    assert "quantiles" not in text
    rewritten = load_baseline(path)
    assert rewritten is not None
    assert rewritten.entries["t::a"].median_ms == 0.001


def test_quantiles_that_contradict_the_median_cannot_switch_the_check_off(tmp_path: Path) -> None:
    """Issue 12, defect 9: quantiles of 1e6 ms next to a 0.001 ms median let a 340x slower case pass."""
    entry = parse_baseline_text(V1, tmp_path / "x.yaml").entries["t::a"]
    result = flat_record(
        "t::a", "eager", "NVIDIA H100", "h100", "forward", None, 64, median_ms=0.34, samples_ms=[0.34] * 10
    )
    marks = GateMarks(latency=LatencySpec(), memory=None, equivalence=None)
    policy = GatePolicy(latency_tolerance=None, memory_tolerance=0.05, missing="warn", updating=False)
    outcome = decide(result, marks, entry, policy, GateContext("t::a", "NVIDIA H100", "x.yaml"))
    assert [violation.check for violation in outcome.violations] == ["latency"]


def _v2(entry: str) -> str:
    return "schema_version: 2\ndevice: {name: x}\nentries:\n  t::a:\n" + entry


GOOD_V2 = """\
    mode: forward
    fits: true
    latency_ms: {median: 1.0, samples: 20}
    runs: 2
    run_medians_ms: [0.99, 1.0101]
    spread: 0.0142
    peak_bytes: 4096
"""


def test_a_consistent_version_2_entry_reads() -> None:
    entry = parse_baseline_text(_v2(GOOD_V2), Path("x.yaml")).entries["t::a"]
    assert (entry.runs, entry.spread) == (2, 0.0142)


@pytest.mark.parametrize(
    ("old", "new", "line", "problem"),
    [
        ("median: 1.0", "median: 2.0", 7, "the median 2.0 contradicts the run medians [0.99, 1.0101]"),
        ("spread: 0.0142", "spread: 0.5", 10, "the spread 0.5 contradicts the run medians"),
        ("spread: 0.0142", "spread: null", 10, "expected 0.0142 from the run medians, found None"),
        ("runs: 2", "runs: 3", 9, "expected 3 run medians (runs: 3), found 2"),
        ("runs: 2", "runs: 0", 8, "expected a finite positive integer, found 0"),
        ("spread: 0.0142", "spread: 0.0142\n    beta: 1.5", 11, "expected a number from 0 to 1 (up to 2 only with"),
        ("spread: 0.0142", "spread: 0.0142\n    beta: 1.5\n    beta_ci: [0.9, 1.6]", 11, "found 1.5 with beta_ci"),
        ("spread: 0.0142", "spread: 0.0142\n    beta: 2.5\n    beta_ci: [2.4, 2.6]", 11, "found 2.5 with beta_ci"),
        ("spread: 0.0142", "spread: 0.0142\n    reference: {ms: 0}", 11, "missing key 'clock_mhz'"),
        ("spread: 0.0142", "spread: 0.0142\n    reference: {ms: 0, clock_mhz: 1}", 11, "expected a finite positive"),
        ("spread: 0.0142", "spread: 0.0142\n    beta_ci: [0.9, 0.1]", 11, "expected low <= high"),
        ("spread: 0.0142", "spread: 0.0142\n    clock_mhz: 0", 11, "expected a finite positive number, found 0"),
        ("spread: 0.0142", "spread: 0.0142\n    fingerprint: {families: [1]}", 11, "missing key 'variant'"),
    ],
)
def test_statistics_that_contradict_each_other_are_refused(old: str, new: str, line: int, problem: str) -> None:
    with pytest.raises(BaselineFileError, match=re.escape(problem)) as error:
        parse_baseline_text(_v2(GOOD_V2.replace(old, new)), Path("x.yaml"))
    assert error.value.line == line


HOSTILE = [
    pytest.param(
        "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(20)
        ),
        1,  # the anchor's line: the composed document shares the anchored node
        "aliases (*name) are not allowed in a baseline file",
        id="alias-bomb",
    ),
    pytest.param(
        "base: {a: 1}\nentries: {<<: {schema_version: 2}}\n", 2, "merge keys (<<) are not allowed", id="merge-key"
    ),
    pytest.param("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a': each key may appear once", id="duplicate"),
    pytest.param("a: " + "9" * 5000 + "\n", 1, "unreadable number", id="huge-integer"),
    pytest.param("a: " + "[" * 5000 + "]" * 5000 + "\n", 1, "not valid YAML", id="deep-flow"),
    pytest.param("".join(" " * i + "k:\n" for i in range(2000)), None, "not valid YAML", id="deep-block"),
    pytest.param("? [1, 2]\n: x\n", 1, "unhashable key", id="unhashable-key"),
]


@pytest.mark.parametrize(("text", "line", "problem"), HOSTILE)
def test_hostile_yaml_is_refused_quickly_with_its_line(text: str, line: int | None, problem: str) -> None:
    started = time.perf_counter()
    with pytest.raises(BaselineFileError, match=re.escape(problem)) as error:
        parse_baseline_text(text, Path("x.yaml"))
    assert time.perf_counter() - started < 2.0
    if line is not None:
        assert error.value.line == line


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("schema_version: 2\n" + "#" * 2000, encoding="utf-8")
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 1024)
    with pytest.raises(
        BaselineFileError,
        match=r"is larger than 1,024 bytes \(about 0 entries as the plugin writes them\): not a baseline file",
    ):
        load_baseline(path)


@pytest.mark.parametrize(
    ("median", "problem"),
    [(0.0, "latency_ms.median: expected a finite positive number, found 0.0"), (math.nan, "found nan")],
)
def test_an_entry_the_reader_would_refuse_is_never_written(tmp_path: Path, median: float, problem: str) -> None:
    """Issue 12, defect 2: a median of 0.0 (a workload faster than the clock) used to be written, then refused."""
    path = tmp_path / "gpu.yaml"
    merge_entries(path, DEVICE, {}, {"t::kept": three_runs()})
    before = path.read_bytes()
    bad = three_runs(latency_ms={"median": median}, runs=1, run_medians_ms=(median,), spread=None)
    changes = merge_entries(path, DEVICE, {}, {"t::bad": bad})
    (change,) = changes
    assert change.refused is not None
    assert problem in change.refused
    assert path.read_bytes() == before  # nothing written: the file reads as before
    mixed = merge_entries(path, DEVICE, {}, {"t::bad": bad, "t::good": three_runs()})
    assert [c.refused is None for c in mixed] == [False, True]
    written = load_baseline(path)
    assert written is not None
    assert sorted(written.entries) == ["t::good", "t::kept"]


def test_an_update_that_measures_zero_says_so_and_keeps_a_readable_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_fast="""
        import pytest

        @pytest.mark.attnperf_latency()
        def test_zero(attnperf):
            attnperf.measure_workload(lambda: None, name="nothing")
        """
    )
    zero = Timing(samples_ms=(0.0,) * 10, clock="fake")
    monkeypatch.setattr(measuring, "measure", lambda *_, **__: Measurement(zero, 0, None, None))
    result = pytester.runpytest_inprocess("--attnperf", *FAST_OPTIONS, "--attnperf-update")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.re_match_lines(
        [r"test_zero: NOT recorded: latency_ms.median: expected a finite positive number, found 0.0"]
    )
    path = baseline_path(pytester.path / "baselines", CPU.slug)
    assert not path.exists() or load_baseline(path) is not None
    # ... and the next run is not stopped by it
    pytester.runpytest_inprocess("--attnperf", *FAST_OPTIONS).assert_outcomes(passed=1)


def test_the_yaml_written_has_no_python_tags(tmp_path: Path) -> None:
    text = BaselineFile(tmp_path / "x.yaml", dict(DEVICE), {}, {"t::a": three_runs()}).to_text()
    assert "!!python" not in text
    assert yaml.safe_load(text)["entries"]["t::a"]["runs"] == 3
