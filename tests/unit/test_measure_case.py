"""The one measuring path (measure/case.py): what the gate, the study and calibrate all get, frozen."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from fast_run import CPU as CPU_INFO

from pytest_attnperf.backends.registry import REGISTRY
from pytest_attnperf.measure import case as measuring
from pytest_attnperf.measure.case import CLEAN_RETRY_NOTE, CaseMeasurement, measure_case
from pytest_attnperf.measure.measurement import Measurement
from pytest_attnperf.measure.timing import Timing
from pytest_attnperf.spec.options import TimingConfig
from pytest_attnperf.spec.shapes import AttnShape
from pytest_attnperf.study.runner import measure_case as study_cell

CPU = torch.device("cpu")
QUICK = TimingConfig(warmup_ms=1.0, rep_ms=2.0, min_samples=3)


def test_a_case_is_measured_into_a_frozen_value_with_its_rates() -> None:
    measured = measure_case(lambda: torch.ones(64).sum(), CPU, QUICK, flops=1e6, bytes_moved=4096)
    assert measured.fits
    assert measured.timing is not None
    assert measured.median_ms == measured.timing.median_ms
    assert measured.tflops == pytest.approx(1e6 / (measured.median_ms * 1e-3) / 1e12)
    assert measured.gbps == pytest.approx(4096 / (measured.median_ms * 1e-3) / 1e9)
    assert measured.bandwidth_share is None  # no copy bandwidth on a CPU
    assert {"first_call", "peak_call", "warmup", "sampling"} <= set(measured.phases_ms)
    with pytest.raises(dataclasses.FrozenInstanceError):
        measured.median_ms = 1.0  # type: ignore[misc]


def _scripted(monkeypatch: pytest.MonkeyPatch, outcomes: list[object]) -> list[str]:
    """measure() replaced: each call raises or returns the next outcome; the calls and frees are logged."""
    log: list[str] = []

    def fake_measure(*_: object, retry_follows: bool = True, **__: object) -> Measurement:
        log.append("measure" if retry_follows else "measure, decided after")
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        assert isinstance(outcome, Measurement)
        return outcome

    monkeypatch.setattr(measuring, "measure", fake_measure)
    return log


def _measurement(samples: int) -> Measurement:
    return Measurement(Timing(samples_ms=(2.0,) * samples, clock="fake"), 100, None, None)


def test_an_out_of_memory_is_retried_once_after_the_caller_frees_its_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _scripted(monkeypatch, [measuring.DoesNotFit("OOM"), _measurement(10)])
    # measure() collected every cycle before it raised: what the caller frees now needs no second full walk
    monkeypatch.setattr(measuring, "release_memory", lambda _device, thorough=False: log.append(f"release {thorough}"))
    measured = measure_case(lambda: None, CPU, QUICK, free_caches=lambda: log.append("free"))
    assert log == ["measure", "free", "release False", "measure, decided after"]
    assert measured.fits
    assert measured.reason == CLEAN_RETRY_NOTE
    assert measured.phases_ms["out_of_memory"] >= 0  # the failed attempt, named in the cost breakdown
    log = _scripted(monkeypatch, [measuring.DoesNotFit("OOM 1"), measuring.DoesNotFit("OOM 2")])
    failed = measure_case(lambda: None, CPU, QUICK)
    assert dataclasses.replace(failed, phases_ms={}) == CaseMeasurement(fits=False, reason="OOM 2")
    assert list(failed.phases_ms) == ["out_of_memory"]


def test_too_few_samples_keep_no_median_and_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted(monkeypatch, [_measurement(2)])
    measured = measure_case(lambda: None, CPU, QUICK, flops=1e9)
    assert measured.fits
    assert measured.median_ms is None
    assert measured.tflops is None
    assert measured.reason is not None
    assert measured.reason.startswith("too few samples: 2 kept")


def test_the_study_measures_through_the_same_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "Does not fit" and "too few samples" mean in the study what they mean in the gate."""
    shape = AttnShape(q_len=16, k_len=16, batch=1, heads=1, kv_heads=1, head_dim=8, dtype="float32")
    info = CPU_INFO
    eager = REGISTRY.get("eager")
    _scripted(monkeypatch, [measuring.DoesNotFit("OOM 1"), measuring.DoesNotFit("OOM 2")])
    assert study_cell(eager, shape, info, CPU, QUICK, seed=0)["status"] == "does_not_fit"
    _scripted(monkeypatch, [_measurement(2)])
    cell = study_cell(eager, shape, info, CPU, QUICK, seed=0)
    assert cell["status"] == "error"
    assert cell["reason"].startswith("too few samples")
    _scripted(monkeypatch, [_measurement(10)])
    cell = study_cell(eager, shape, info, CPU, QUICK, seed=0)
    assert cell["status"] == "ok"
    assert cell["median_ms"] == 2.0
    assert cell["gbps"] == pytest.approx(shape.bytes_moved() / 2e-3 / 1e9)
