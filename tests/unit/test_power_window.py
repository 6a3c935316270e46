"""Mean power while running: the energy counter between two of its ticks while calls run back to back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pytest_attnperf.measure.nvml import busy_power


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


def test_no_counter_or_a_counter_that_does_not_step_gives_no_power() -> None:
    gpu = FakeGpu(watts=650.0, tick_s=10.0)
    assert busy_power(gpu.energy, gpu.launch, max_s=0.05, now=gpu.now) is None
    assert busy_power(lambda: None, gpu.launch, now=gpu.now) is None
