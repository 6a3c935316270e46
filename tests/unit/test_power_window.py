"""Mean power while running: the energy counter between two of its ticks while calls run back to back."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_attnperf.gate.baseline_schema import BaselineEntry
from pytest_attnperf.gate.power import CAP_KERNEL_MS, EXPLAIN_FROM, power_window_skip
from pytest_attnperf.measure.measurement import never_power, power_fields
from pytest_attnperf.measure.nvml import busy_power
from pytest_attnperf.session.case_gate import CaseGate
from pytest_attnperf.spec.marks import GateMarks, LatencySpec


class FakeGpu:
    """A GPU drawing ``watts`` while busy; its energy counter steps every ``tick_s``; time advances per poll."""

    def __init__(self, watts: float, tick_s: float, poll_s: float = 0.0005) -> None:
        self.watts, self.tick_s, self.poll_s = watts, tick_s, poll_s
        self.t = 0.0123  # not on a tick
        self.launched = 0

    def now(self) -> float:
        self.t += self.poll_s
        return self.t

    def energy(self) -> float:
        ticks = int(self.t / self.tick_s)
        return ticks * self.tick_s * self.watts * 1e3  # mJ up to the last tick

    def launch(self) -> Callable[[], bool]:
        self.launched += 1
        return lambda: True


@pytest.mark.parametrize("tick_s", [0.001, 0.02, 0.1])
def test_the_window_runs_from_tick_to_tick_and_gives_the_true_power(tick_s: float) -> None:
    gpu = FakeGpu(watts=650.0, tick_s=tick_s)
    window = busy_power(gpu.energy, gpu.launch, min_window_s=0.05, max_s=0.5, now=gpu.now)
    assert window is not None
    assert window.power_w == pytest.approx(650.0, rel=0.02)
    assert window.window_s >= 0.05
    assert gpu.launched > 3  # the queue was kept full while the counter was read


class BurstingGpu(FakeGpu):
    """Over its power limit for the first ``burst_s`` of back-to-back load (the limit is held over a longer average)."""

    def __init__(self, watts: float, burst_w: float, burst_s: float, tick_s: float) -> None:
        super().__init__(watts, tick_s)
        self.burst_w, self.burst_s, self.began = burst_w, burst_s, self.t

    def energy(self) -> float:
        ticked = int(self.t / self.tick_s) * self.tick_s
        over = min(max(ticked - self.began, 0.0), self.burst_s)
        return (ticked * self.watts + over * (self.burst_w - self.watts)) * 1e3


@pytest.mark.parametrize("tick_s", [0.001, 0.02])
def test_the_window_opens_after_the_load_has_settled(tick_s: float) -> None:
    gpu = BurstingGpu(watts=690.0, burst_w=950.0, burst_s=0.08, tick_s=tick_s)
    settled = busy_power(gpu.energy, gpu.launch, min_window_s=0.05, max_s=0.5, settle_s=0.1, now=gpu.now)
    assert settled is not None
    assert settled.power_w == pytest.approx(690.0, rel=0.02)
    gpu = BurstingGpu(watts=690.0, burst_w=950.0, burst_s=0.08, tick_s=tick_s)
    at_once = busy_power(gpu.energy, gpu.launch, min_window_s=0.05, max_s=0.5, settle_s=0.0, now=gpu.now)
    assert at_once is not None
    assert at_once.power_w > 800.0  # what windows opened at once read on a 700 W card


@pytest.mark.parametrize("queue", [2, 3])
def test_the_queue_holds_as_many_chunks_as_asked(queue: int) -> None:
    gpu = FakeGpu(watts=650.0, tick_s=10.0)
    assert busy_power(gpu.energy, gpu.launch, max_s=0.0, queue=queue, now=gpu.now) is None
    assert gpu.launched == queue  # queued before the first read; a long kernel's chunks go two deep


def test_no_counter_or_a_counter_that_does_not_step_gives_no_power() -> None:
    gpu = FakeGpu(watts=650.0, tick_s=10.0)
    assert busy_power(gpu.energy, gpu.launch, max_s=0.05, now=gpu.now) is None
    assert busy_power(lambda: None, gpu.launch, now=gpu.now) is None


# ---------------------------------------------------------------- when the window is measured (--attnperf-power)


def _skip(setting: str = "auto", *, recording: bool = False, gated: bool = True, power: float | None = 600.0,
          median_ms: float = 5.0, baseline_ms: float = 0.5) -> str | None:  # fmt: skip
    """``gated``: against a baseline entry whose median is ``baseline_ms`` (by default far under the run's: a
    slowdown for the power to explain)."""
    return power_window_skip(setting, recording=recording, baseline_median_ms=baseline_ms if gated else None,
                             baseline_power_w=power, median_ms=median_ms)  # fmt: skip


def test_auto_measures_a_gated_kernel_at_the_power_cap_whose_baseline_has_a_power() -> None:
    assert _skip(median_ms=CAP_KERNEL_MS) is None
    assert _skip(median_ms=25.0) is None


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ({"median_ms": 0.3}, "auto: a 0.3 ms kernel stays under the power cap (measured from 1 ms)"),
        ({"power": None}, "auto: the baseline entry has no recorded power to compare with"),
        ({"gated": False, "power": None}, "auto: no baseline latency to compare it with"),
    ],
)
def test_auto_skips_a_gated_case_whose_power_informs_nothing(case: dict[str, Any], reason: str) -> None:
    assert _skip(**case) == reason


def test_auto_measures_a_capped_case_only_when_it_is_slower_than_its_baseline_by_more_than_a_third_of_3_percent(
) -> None:  # fmt: skip
    assert EXPLAIN_FROM == 0.01
    assert _skip(median_ms=5.06, baseline_ms=5.0) is None  # 1.2 % slower: its power may explain it
    assert _skip(median_ms=5.04, baseline_ms=5.0) == (
        "auto: x1.008 the baseline's median, no slowdown to explain (measured from x1.01)"
    )
    assert _skip(median_ms=4.0, baseline_ms=5.0) is not None  # faster: nothing fails, nothing to explain
    assert _skip(median_ms=5.0, gated=False) == "auto: no baseline latency to compare it with"  # no median: not gated
    assert _skip(recording=True, median_ms=5.0, baseline_ms=5.0) is None  # a recording run stores every power
    assert _skip("on", median_ms=5.0, baseline_ms=5.0) is None


def test_auto_measures_every_case_of_a_recording_run_and_on_and_off_override_it() -> None:
    assert _skip(recording=True, gated=False, power=None, median_ms=0.01) is None
    assert _skip("on", gated=False, power=None, median_ms=0.01) is None
    assert _skip("off", recording=True) == "--attnperf-power=off"
    with pytest.raises(ValueError, match=r"^power window setting 'always' is not one of: auto, on, off$"):
        _skip("always")


def test_a_skipped_or_failed_window_is_a_null_power_with_its_reason_never_a_zero() -> None:
    windows: list[float] = []

    def window() -> dict[str, float]:
        windows.append(1.0)
        return {"burst_power_w": 612.0, "burst_window_s": 0.1, "burst_energy_mj": 61200.0}

    assert power_fields(lambda ms: None, 3.0, window) == window()
    assert power_fields(lambda ms: f"short {ms}", 0.2, window) == {
        "burst_power_w": None,
        "burst_power_skipped": "short 0.2",
    }
    assert len(windows) == 2  # the skipped one never ran its calls
    assert power_fields(lambda ms: None, 3.0, dict) == {
        "burst_power_w": None,
        "burst_power_skipped": "the energy counter did not step twice within 0.5 s",
    }
    assert never_power(1.0) == "not asked for"  # the copy bandwidth and the study's matmul: nobody reads theirs


# ---------------------------------------------------------------- the case gate's answer


class _Session:
    def __init__(self, power: str, update: bool, entry: BaselineEntry | None, calibrate: bool) -> None:
        self.settings = SimpleNamespace(power=power, update=update, calibrate=calibrate, fingerprint="off")
        self.entry = entry

    def baseline_entry(self, nodeid: str) -> BaselineEntry | None:
        return self.entry


GATED = LatencySpec()


def _gate(power: str = "auto", *, update: bool = False, calibrate: bool = False,
          entry_power: float | None = 600.0, latency: LatencySpec | None = GATED) -> CaseGate:  # fmt: skip
    entry = BaselineEntry(
        backend="flash-attn", shape=None, mode="forward", latency_ms={"median": 5.0, "samples": 20}, peak_bytes=None,
        fits=True, recorded_at="2026-01-01T00:00:00Z", environment={}, power_w=entry_power,
    )  # fmt: skip
    item = SimpleNamespace(nodeid="test_x.py::test_attention[flash-attn-16K]", stash={})
    marks = GateMarks(latency=latency, memory=None, equivalence=None)
    return CaseGate(_Session(power, update, entry, calibrate), item, marks)  # type: ignore[arg-type]


def test_the_case_gate_asks_for_the_window_from_its_baseline_entry_and_the_run() -> None:
    assert _gate().power_window(5.5) is None  # 10 % slower than the entry's 5 ms
    assert (
        _gate().power_window(5.0) == "auto: x1.000 the baseline's median, no slowdown to explain (measured from x1.01)"
    )
    assert _gate().power_window(0.2) == "auto: a 0.2 ms kernel stays under the power cap (measured from 1 ms)"
    assert _gate(entry_power=None).power_window(5.5) == "auto: the baseline entry has no recorded power to compare with"
    # A test without a latency gate against its baseline never says the power next to a baseline's.
    assert _gate(latency=None).power_window(5.0) == "auto: no baseline latency to compare it with"
    assert _gate(latency=LatencySpec(budget_ms=9.0, use_baseline=False)).power_window(5.0) is not None
    assert _gate(update=True, entry_power=None).power_window(0.2) is None  # recording: every case
    assert _gate("off", update=True).power_window(5.0) == "--attnperf-power=off"
    assert _gate("on", latency=None).power_window(0.01) is None
    # attnperf calibrate stores detection limits only and judges no case against its baseline: nothing reads it.
    assert _gate(calibrate=True).power_window(5.0) == "auto: no baseline latency to compare it with"
    assert _gate(calibrate=True, update=True).power_window(5.0) is None
