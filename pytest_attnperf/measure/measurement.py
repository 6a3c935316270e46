"""One workload measured: its peak memory (one call), then its timing and the GPU's state over it.

An out-of-memory is :class:`DoesNotFit`. The runner retries one after freeing everything it
holds, so "does not fit" means "does not fit in a clean state", whatever ran before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..spec.options import TimingConfig
from . import machine_reference
from .memory import (
    DoesNotFit,
    Workload,
    cpu_peak_memory,
    cuda_peak_memory,
    describe_error,
    is_out_of_memory,
    release_memory,
)
from .nvml import POWER_MAX_S, POWER_QUEUE, Nvml, busy_power, case_summary, nvml_for
from .timing import Timing, time_cpu, time_cuda


@dataclass(frozen=True)
class Measurement:
    """What one workload cost: timing, peak memory above its inputs, its output and the GPU over it."""

    timing: Timing
    peak_bytes: int | None
    memory_note: str | None
    output: Any
    gpu: dict[str, Any] = field(default_factory=dict)
    free_bytes: int | None = None  # free device memory before the peak call
    phases_ms: dict[str, float] = field(default_factory=dict)  # wall time of each step, for the cost breakdown


# Given the case's median (ms): None to measure its power window, or why not (``gate/power.py`` decides for a case).
PowerWindowSkip = Callable[[float], str | None]


def never_power(median_ms: float) -> str | None:
    """The default of internal measurements (the copy bandwidth, the study's matmul): nothing reads their power."""
    return "not asked for"


def measure(
    workload: Workload,
    device: torch.device,
    config: TimingConfig,
    *,
    retry_follows: bool = True,
    power_skip: PowerWindowSkip = never_power,
    reference_policy: str = "periodic",
) -> Measurement:
    """Peak memory of one call (whose output is kept), then the timing; OOM -> DoesNotFit.

    An out-of-memory is followed by a thorough release (every reference cycle, frozen ones too), so a retry starts
    clean. ``retry_follows=False``: the caller decides "does not fit" from this attempt (itself a retry after a
    thorough release); what it leaves is new, unfrozen objects, so a plain release frees their cycles.
    ``power_skip`` says, from the median, whether the power window is measured; a skipped one is recorded as
    ``burst_power_w: None`` with the reason in ``burst_power_skipped``, so no reader takes it for zero.
    ``reference_policy`` (--attnperf-machine-reference): "adjacent" reads the machine reference right before and
    right after a long case (``machine_reference.adjacent``), the second kept as ``gpu.reference_after``.
    """
    failure: str | None = None
    peak_bytes: int | None
    free_bytes: int | None = None
    gpu: dict[str, Any] = {}
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(phases.get(name, 0.0) + (now - clock) * 1e3, 3)
        clock = now

    release_memory(device)  # a failed case before this one may still hold tensors in a reference cycle
    lap("release")
    try:
        workload()  # first call: compile/autotune, so it is not counted as the workload's peak
        if device.type == "cuda":  # its GPU time too, so the peak call's wall time is the kernel's (plus a launch)
            torch.cuda.synchronize(device)
        lap("first_call")
        if device.type == "cuda":
            free_bytes = int(torch.cuda.mem_get_info(device)[0])
            output, peak_bytes = cuda_peak_memory(workload, device)
            lap("peak_call")
            memory_note = None
            nvml = nvml_for(device)
            # the machine's state next to this case (gate/machine.py): read now for a long case when adjacent
            adjacent = machine_reference.adjacent(reference_policy, phases.get("peak_call"))
            reference = machine_reference.refresh(device) if adjacent else machine_reference.current(device)
            placement = "adjacent" if adjacent else "periodic"
            reference_age_s = machine_reference.age_s(device)
            lap("machine_reference")
            start = nvml.snapshot() if nvml else None
            timing = time_cuda(workload, device, config, max_clock_mhz=nvml.max_sm_clock_mhz() if nvml else None)
            if nvml is not None and start is not None:
                gpu = case_summary(start, nvml.snapshot(), timing.calls)
            if reference is not None:
                gpu["reference"] = reference.as_dict()
                gpu["reference_placement"] = placement  # how this case's reading was taken: a verdict compares like
                if reference_age_s is not None:  # how long before this case it was read: what the credit stands on
                    gpu["reference_age_s"] = round(reference_age_s, 2)
            if nvml is not None and timing.samples_ms:
                lap("timing")
                median_ms = timing.median_ms
                gpu.update(power_fields(power_skip, median_ms, lambda: _busy_power(workload, device, nvml, median_ms)))
                lap("power")
            if adjacent:  # and right after (after its power window, which it must not disturb): the state it left
                lap("timing")
                gpu.update(_reading_after(device))
                lap("machine_reference")
        else:
            output, cpu_peak, memory_note = cpu_peak_memory(workload)
            lap("peak_call")
            peak_bytes = cpu_peak
            timing = time_cpu(workload, config)
        lap("timing")
        # The timing step's parts, so a report's phases add up (summed over a case's re-measurements too):
        # warm-up, sampling and the rest (NVML, stamps); the lead spin runs inside the first two.
        warmup_ms, sampling_ms = timing.info["warmup_wall_ms"], timing.info["sampling_wall_ms"]
        phases["warmup"], phases["sampling"] = warmup_ms, sampling_ms
        phases["timing_other"] = round(phases.pop("timing") - warmup_ms - sampling_ms, 3)
        if "lead_total_ms" in timing.info:
            phases["lead_spin"] = timing.info["lead_total_ms"]
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        failure = describe_error(error)
    if failure is not None:
        # The traceback (and every tensor its frames held) is gone once the except block ends.
        release_memory(device, thorough=retry_follows)
        raise DoesNotFit(failure)
    return Measurement(
        timing=timing,
        peak_bytes=peak_bytes,
        memory_note=memory_note,
        output=output,
        gpu=gpu,
        free_bytes=free_bytes,
        phases_ms=phases,
    )


def _reading_after(device: torch.device) -> dict[str, Any]:
    """The reading right after a long case; its operands (96 MiB) beside the case's output may not fit, and a case
    that fit must not become "does not fit" for it: then the reading is missing, and why."""
    try:
        after = machine_reference.refresh(device)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        release_memory(device)
        return {"reference_after": None, "reference_after_skipped": describe_error(error)}
    return {"reference_after": after.as_dict()} if after is not None else {}


def power_fields(
    power_skip: PowerWindowSkip, median_ms: float, window: Callable[[], dict[str, float]]
) -> dict[str, Any]:
    """The power window's fields when ``power_skip`` asks for it and it comes; else a null power and why."""
    skipped = power_skip(median_ms)
    if skipped is None:
        fields = window()
        if fields:
            return fields
        skipped = f"the energy counter did not step twice within {POWER_MAX_S:g} s"
    return {"burst_power_w": None, "burst_power_skipped": skipped}


CHUNK_MS = 2.0  # calls per queued chunk of the power window: about this much GPU time
# A chunk of at least this much GPU time (one call of a long kernel) is queued two deep, not three: the host
# launches the next in far less (a case's host launch time was at most 1.6 ms on the H100), and every chunk
# still queued when the second tick comes is drained unused.
LONG_CHUNK_MS = 10.0


def _busy_power(workload: Workload, device: torch.device, nvml: Nvml, median_ms: float) -> dict[str, float]:
    """The case's mean power while running: calls back to back (no flush, no spin), between two counter ticks."""
    calls = max(1, min(10_000, math.ceil(CHUNK_MS / max(median_ms, 1e-4))))

    def launch_chunk() -> Callable[[], bool]:
        for _ in range(calls):
            workload()
        done = torch.cuda.Event()
        done.record()
        return done.query

    window = busy_power(nvml.energy_mj, launch_chunk, queue=2 if calls * median_ms >= LONG_CHUNK_MS else POWER_QUEUE)
    torch.cuda.synchronize(device)
    return window.as_gpu_fields() if window is not None else {}
