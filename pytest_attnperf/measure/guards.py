"""Environment guards: is this GPU fit to be timed (not shared, not throttled, clocks as recorded)?

Read through nvidia-ml-py (NVML, :mod:`.nvml`). Nothing here changes the GPU's settings; it only reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .nvml import nvml_for, reason_names

BENIGN_THROTTLE_REASONS = frozenset({"software power cap", "sync boost"})
CLOCK_DRIFT = 0.10  # max SM clock differing by more than this from the baseline's is reported


@dataclass(frozen=True)
class GpuState:
    """What NVML says about the GPU right now."""

    sm_clock_mhz: int
    max_sm_clock_mhz: int
    memory_clock_mhz: int
    temperature_c: int
    power_limit_w: float
    throttle_reasons: tuple[str, ...] = ()
    other_processes: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["throttle_reasons"] = list(self.throttle_reasons)
        data.pop("notes")
        return data


def read_gpu_state(device: torch.device) -> GpuState | None:
    """The GPU's clocks, temperature, power limit, clock-event reasons and other users; None without NVML."""
    nvml = nvml_for(device)
    if nvml is None:
        return None
    pynvml, handle = nvml.nvml, nvml.handle
    try:
        processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        pids = {process.pid for process in processes}
        # In a container NVML may show our own process under another PID: then count all but one.
        others = len(pids - {os.getpid()}) if os.getpid() in pids else max(0, len(pids) - 1)
        snapshot = nvml.snapshot()
        return GpuState(
            sm_clock_mhz=int(snapshot.sm_clock_mhz or 0),
            max_sm_clock_mhz=int(nvml.max_sm_clock_mhz() or 0),
            memory_clock_mhz=int(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)),
            temperature_c=int(snapshot.temperature_c or 0),
            power_limit_w=pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
            throttle_reasons=tuple(reason_names(snapshot.reasons)),
            other_processes=others,
        )
    except Exception as error:  # an NVML call this driver lacks: report, do not crash the run
        return GpuState(0, 0, 0, 0, 0.0, notes=(f"NVML query failed: {error}",))


def state_problems(state: GpuState | None, recorded: Mapping[str, Any] | None = None) -> list[str]:
    """Why timings on this GPU may not compare: sharing, throttling, clocks unlike the baseline's."""
    if state is None:
        return []
    problems = list(state.notes)
    if state.other_processes:
        problems.append(f"{state.other_processes} other process(es) are using this GPU: their work changes the timings")
    # A software power cap is how a GPU at full load normally runs; the others mean trouble.
    serious = [reason for reason in state.throttle_reasons if reason not in BENIGN_THROTTLE_REASONS]
    if serious:
        problems.append(f"the GPU reports clock throttling: {', '.join(serious)}")
    if recorded:
        for key, label in (("max_sm_clock_mhz", "max SM clock"), ("power_limit_w", "power limit")):
            before, now = recorded.get(key), getattr(state, key)
            if isinstance(before, (int, float)) and before and abs(now - before) / before > CLOCK_DRIFT:
                problems.append(f"{label} is {now} now but was {before} when the baseline was recorded")
    return problems
