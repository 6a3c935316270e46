"""The machine reference's schedule (no GPU here: the probe itself is replaced by a counter)."""

from __future__ import annotations

import pytest
import torch

from pytest_attnperf.gate.machine import Reference
from pytest_attnperf.measure import machine_reference


def test_it_is_measured_at_most_every_interval_and_anew_at_session_start(monkeypatch: pytest.MonkeyPatch) -> None:
    readings: list[float] = []

    def probe(device: torch.device) -> Reference:
        readings.append(1.0)
        return Reference(ms=0.2 + len(readings) / 1000, clock_mhz=1700.0)

    monkeypatch.setattr(machine_reference, "probe", probe)
    monkeypatch.setattr(machine_reference, "_latest", {})
    device = torch.device("cuda", 0)
    first = machine_reference.current(device, now=100.0)
    assert machine_reference.current(device, now=100.0 + machine_reference.INTERVAL_S) is first
    # the age a case records beside its reading: how long before it the reading was taken
    assert machine_reference.age_s(device, now=100.0 + machine_reference.INTERVAL_S) == machine_reference.INTERVAL_S
    later = machine_reference.current(device, now=101.0 + machine_reference.INTERVAL_S)
    assert later is not first
    assert machine_reference.age_s(device, now=101.5 + machine_reference.INTERVAL_S) == 0.5
    assert machine_reference.age_s(torch.device("cuda", 1)) is None  # no reading on that device yet
    assert len(readings) == 2
    machine_reference.refresh(device)
    assert len(readings) == 3
    assert machine_reference.current(torch.device("cpu")) is None


def test_the_settling_waits_for_a_steady_chunk_time() -> None:
    assert not machine_reference._steady([1.0] * 9)
    assert machine_reference._steady([1.0] * 10)
    assert not machine_reference._steady([1.0] * 5 + [1.05] * 5)  # the step to the power cap
    assert machine_reference._steady([1.0] * 5 + [1.05] * 10)


def test_adjacent_readings_are_for_long_cases_only_and_only_when_asked() -> None:
    long_call = machine_reference.LONG_CALL_MS
    assert machine_reference.adjacent("adjacent", long_call)
    assert not machine_reference.adjacent("adjacent", long_call - 0.1)  # a short kernel stays below the power cap
    assert not machine_reference.adjacent("adjacent", None)  # no first call timed (the CPU)
    assert not machine_reference.adjacent("periodic", 100.0)
