"""NVML, opened once per process: the GPU's state over each case, and the cool-down before a re-measurement.

Per case, a snapshot before the warm-up and one after the last sample give the temperature, the
power, the time spent power- or thermally capped and the clock-event reasons; their energy per
call spans the lead spins, the L2 flushes and the host's syncs too, so it is kept as a record
only. The case's mean power while running is :func:`busy_power`: the energy counter between two of
its ticks while the workload runs back to back (no spin, no flush, the queue never empty), over
that window's time. The non-deprecated calls are used where the driver has them
(``nvmlDeviceGetCurrentClocksEventReasons``, ``nvmlDeviceGetTemperatureV``), the old ones otherwise.
Nothing here changes a setting; every call that fails leaves its field empty.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .device import gpu_uuid

# NVML clock-event (throttle) reason bits; "GPU idle" is not a problem while nothing runs.
CLOCK_EVENT_REASONS = {
    0x2: "applications clocks setting",
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x10: "sync boost",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
    0x100: "display clock setting",
}
SOFTWARE_POWER_CAP = 0x4
COOL_DOWN_MARGIN_C, COOL_DOWN_MAX_S, COOL_DOWN_POLL_S = 2, 2.0, 0.05
POWER_WINDOW_S, POWER_MAX_S, POWER_QUEUE = 0.05, 0.5, 3  # >= 50 ms between counter ticks; give up after 0.5 s
# The window opens at the first tick after this much back-to-back load: the power limit is held over a longer
# average, so a card coming from the sampling's lighter duty cycle runs over it at first (windows opened at once read
# 735-950 W on a 700 W H100 for kernels held at the cap, live validation of December 2026).
POWER_SETTLE_S = 0.1


def reason_names(mask: int | None) -> list[str]:
    return [name for bit, name in CLOCK_EVENT_REASONS.items() if mask is not None and mask & bit]


@dataclass(frozen=True)
class GpuSnapshot:
    """What NVML reports at one moment; None where the driver does not say."""

    time_s: float
    energy_mj: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    reasons: int | None = None
    power_capped_ns: float | None = None  # cumulative time under the power policy (a counter)
    thermal_capped_ns: float | None = None


def case_summary(start: GpuSnapshot, end: GpuSnapshot, calls: int) -> dict[str, Any]:
    """The GPU over one case: temperatures, power, energy per call, capped fraction, reasons at the end."""
    elapsed = end.time_s - start.time_s
    summary: dict[str, Any] = {
        "temperature_c": [start.temperature_c, end.temperature_c],
        "power_w": end.power_w,
        "nvml_sm_clock_mhz": [start.sm_clock_mhz, end.sm_clock_mhz],
        "clock_event_reasons": reason_names(end.reasons),
        "wall_s": round(elapsed, 4),
    }
    if start.energy_mj is not None and end.energy_mj is not None and elapsed > 0:
        energy = end.energy_mj - start.energy_mj
        summary["mean_power_w"] = round(energy / 1e3 / elapsed, 2)
        summary["energy_mj_per_call"] = round(energy / calls, 4) if calls and energy > 0 else None
    for name, before, after in (
        ("power_capped_fraction", start.power_capped_ns, end.power_capped_ns),
        ("thermal_capped_fraction", start.thermal_capped_ns, end.thermal_capped_ns),
    ):
        if before is not None and after is not None and elapsed > 0:
            summary[name] = round(min(max((after - before) / 1e9 / elapsed, 0.0), 1.0), 4)
    return summary


@dataclass(frozen=True)
class PowerWindow:
    """Mean power over back-to-back calls: the energy between two counter ticks over the time between them."""

    power_w: float
    window_s: float
    energy_mj: float

    def as_gpu_fields(self) -> dict[str, float]:
        return {
            "burst_power_w": round(self.power_w, 2),
            "burst_window_s": round(self.window_s, 4),
            "burst_energy_mj": round(self.energy_mj, 1),
        }


def busy_power(
    energy_mj: Callable[[], float | None],
    launch_chunk: Callable[[], Callable[[], bool]],
    *,
    min_window_s: float = POWER_WINDOW_S,
    max_s: float = POWER_MAX_S,
    queue: int = POWER_QUEUE,
    settle_s: float = POWER_SETTLE_S,
    now: Callable[[], float] = time.perf_counter,
) -> PowerWindow | None:
    """Keep ``queue`` chunks of calls queued and read the counter until two ticks ``min_window_s`` apart, the first
    of them at least ``settle_s`` into the load.

    NVML's total-energy counter advances in steps (every few to ~100 ms by driver and GPU): a window
    from one step to another holds exactly the energy of its time, and the GPU is busy all through
    it. ``launch_chunk`` queues a chunk of calls and returns a query that says when it has run.
    None when the counter is missing or does not step twice within ``max_s``.
    """
    first = energy_mj()
    if first is None:
        return None
    pending = deque(launch_chunk() for _ in range(queue))
    began, last = now(), first
    start: tuple[float, float] | None = None
    while now() - began < max_s:
        if pending[0]():
            pending.popleft()
            pending.append(launch_chunk())
        value = energy_mj()
        if value is None:
            return None
        if value == last:
            continue
        moment, last = now(), value
        if start is None:
            if moment - began >= settle_s:
                start = (moment, value)
        elif moment - start[0] >= min_window_s:
            window = moment - start[0]
            return PowerWindow((value - start[1]) / 1e3 / window, window, value - start[1])
    return None


def _first(*calls: Callable[[], Any]) -> Any:
    """The first call that answers (a new NVML function, then its deprecated predecessor); None if none does."""
    for call in calls:
        try:
            return call()
        except Exception:  # NVMLError_FunctionNotFound, NotSupported, AttributeError on an old binding
            continue
    return None


class Nvml:
    """One GPU's NVML handle for the life of the process."""

    def __init__(self, module: Any, handle: Any) -> None:
        self.nvml, self.handle = module, handle

    def snapshot(self) -> GpuSnapshot:
        nvml, handle = self.nvml, self.handle
        power_mw = _first(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        power_policy = self._violation_ns(getattr(nvml, "NVML_PERF_POLICY_POWER", 0))
        thermal_policy = self._violation_ns(getattr(nvml, "NVML_PERF_POLICY_THERMAL", 1))
        return GpuSnapshot(
            time_s=time.perf_counter(),
            energy_mj=_first(lambda: float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))),
            temperature_c=_first(
                lambda: float(nvml.nvmlDeviceGetTemperatureV(handle, nvml.NVML_TEMPERATURE_GPU)),
                lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            ),
            power_w=power_mw / 1e3 if power_mw is not None else None,
            sm_clock_mhz=_first(lambda: float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))),
            reasons=self.reasons(),
            power_capped_ns=power_policy,
            thermal_capped_ns=thermal_policy,
        )

    def energy_mj(self) -> float | None:
        value = _first(lambda: float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)))
        return float(value) if value is not None else None

    def _violation_ns(self, policy: int) -> float | None:
        value = _first(lambda: self.nvml.nvmlDeviceGetViolationStatus(self.handle, policy).violationTime)
        return float(value) if value is not None else None

    def reasons(self) -> int | None:
        nvml, handle = self.nvml, self.handle
        value = _first(
            lambda: nvml.nvmlDeviceGetCurrentClocksEventReasons(handle),
            lambda: nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle),
        )
        return int(value) if value is not None else None

    def max_sm_clock_mhz(self) -> float | None:
        value = _first(lambda: self.nvml.nvmlDeviceGetMaxClockInfo(self.handle, self.nvml.NVML_CLOCK_SM))
        return float(value) if value else None

    def cool_down(
        self,
        target_c: float | None,
        *,
        max_s: float = COOL_DOWN_MAX_S,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.perf_counter,
    ) -> float:
        """Wait (at most ``max_s``) until the GPU is within 2 C of ``target_c`` and not power-capped; seconds waited."""
        start = now()
        while now() - start < max_s:
            snapshot = self.snapshot()
            warm = target_c is not None and (snapshot.temperature_c or 0) > target_c + COOL_DOWN_MARGIN_C
            capped = bool((snapshot.reasons or 0) & SOFTWARE_POWER_CAP)
            if not warm and not capped:
                break
            sleep(COOL_DOWN_POLL_S)
        return now() - start


_handles: dict[torch.device, Nvml | None] = {}


def nvml_for(device: torch.device) -> Nvml | None:
    """The NVML handle of the GPU torch calls ``device`` (by UUID), opened once; None without NVML or GPU."""
    if device in _handles:
        return _handles[device]
    handle: Nvml | None = None
    if device.type == "cuda":
        try:
            import pynvml

            pynvml.nvmlInit()  # reference-counted by NVML; kept open for the process
            uuid = gpu_uuid(device)
            raw = (
                pynvml.nvmlDeviceGetHandleByUUID(uuid)
                if uuid is not None
                else pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            )
            handle = Nvml(pynvml, raw)
        except Exception:  # no NVML library, no driver access: cases carry no GPU state
            handle = None
    _handles[device] = handle
    return handle


def snapshot_dict(snapshot: GpuSnapshot) -> dict[str, Any]:
    return asdict(snapshot)
