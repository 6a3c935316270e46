"""One case measured, the one way the gate, the study and ``attnperf calibrate`` all measure: a frozen CaseMeasurement.

``measure_case`` times a workload and measures its peak memory (:mod:`.measurement`), retries an
out-of-memory once after the caller freed what it holds (so "does not fit" means "does not fit in
a clean state", here and in the study alike), keeps a median only over enough samples, and derives
TFLOP/s and bytes per second. What a case adds after the timing (the kernels that ran, its output
check) is added with :func:`dataclasses.replace`; nothing writes into a measurement.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..spec.options import TimingConfig
from .bandwidth import copy_bandwidth_gbps
from .equivalence import Equivalence, describe_mismatch
from .measurement import Measurement, PowerWindowSkip, measure, never_power
from .memory import DoesNotFit, Workload, release_memory
from .timing import Timing, free_flush_buffers

CLEAN_RETRY_NOTE = "fit only after the plugin freed its caches: the allocator's state decided the first attempt"


@dataclass(frozen=True)
class CaseMeasurement:
    """What one case cost and did: samples and clocks, peak, fits or why not, rates, and what was added after."""

    fits: bool
    reason: str | None = None  # why it does not fit, why no median was kept, or how it came to fit
    timing: Timing | None = None  # every sample and clock, the warm-up's, how the sampling went
    median_ms: float | None = None  # None: too few samples kept to gate on
    iqr_ms: float | None = None
    peak_bytes: int | None = None
    free_bytes: int | None = None  # free device memory before the peak call: the headroom
    gpu: Mapping[str, Any] = field(default_factory=dict)  # NVML over the case, the machine reference
    phases_ms: Mapping[str, float] = field(default_factory=dict)  # wall time of each step (the cost breakdown)
    tflops: float | None = None
    bytes_moved: int | None = None  # Q read, the visible KV cache read once, O written (forward)
    gbps: float | None = None
    bandwidth_share: float | None = None  # gbps over the device's measured copy bandwidth (CUDA)
    fingerprint: Mapping[str, Any] | None = None  # the kernels that ran, when asked
    equivalence: Equivalence | None = None  # the output against the references, when asked

    def with_phase(self, name: str, milliseconds: float) -> CaseMeasurement:
        return dataclasses.replace(self, phases_ms={**self.phases_ms, name: round(milliseconds, 3)})

    def followed_by(self, later: CaseMeasurement) -> CaseMeasurement:
        """A re-measurement of this case: its numbers, the phases of both summed, the kernels profiled once."""
        phases = dict(self.phases_ms)
        for phase, milliseconds in later.phases_ms.items():
            phases[phase] = phases.get(phase, 0.0) + milliseconds
        return dataclasses.replace(
            later,
            phases_ms=phases,
            fingerprint=later.fingerprint if later.fingerprint is not None else self.fingerprint,
            reason=later.reason if later.reason is not None else self.reason,
        )

    def record_fields(self) -> dict[str, Any]:
        """The record's fields this measurement fills (the record is built from them, once)."""
        timing = self.timing
        fields: dict[str, Any] = {
            "fits": self.fits,
            "peak_bytes": self.peak_bytes,
            "memory_free_bytes": self.free_bytes,
            "gpu": dict(self.gpu) or None,
            "phases_ms": dict(self.phases_ms),
            "median_ms": self.median_ms,
            "iqr_ms": self.iqr_ms,
            "latency": None,
            "tflops": self.tflops,
            "bytes_moved": self.bytes_moved,
            "gbps": self.gbps,
            "bandwidth_share": self.bandwidth_share,
        }
        if self.reason is not None:
            fields["reason"] = self.reason
        if timing is not None:
            fields.update(
                clock=timing.clock,
                clock_source=timing.clock_source,
                timing_info=dict(timing.info),
                samples_ms=list(timing.samples_ms),
                clock_mhz=list(timing.clocks_mhz),
                warmup_ms=list(timing.warmup_ms),
                warmup_clock_mhz=list(timing.warmup_clocks_mhz),
            )
            if self.median_ms is not None:
                fields["latency"] = {key: float(value) for key, value in timing.summary().items()}
        if self.fingerprint is not None:
            fields["fingerprint"] = dict(self.fingerprint)
        equivalence = self.equivalence
        if equivalence is not None:
            # The record travels as strict JSON (no NaN/Inf): a non-finite output keeps its count and
            # first position in the mismatch text instead of an infinite max_error.
            fields.update(
                max_error=equivalence.max_error if math.isfinite(equivalence.max_error) else None,
                error_budget=equivalence.budget,
                equivalence_passed=equivalence.passed,
                mismatch=describe_mismatch(equivalence),
            )
        return fields


def does_not_fit(reason: str) -> CaseMeasurement:
    return CaseMeasurement(fits=False, reason=reason)


def measure_case(
    workload: Workload,
    device: torch.device,
    config: TimingConfig,
    *,
    flops: float | None = None,
    bytes_moved: int | None = None,
    free_caches: Callable[[], None] = lambda: None,
    power_skip: PowerWindowSkip = never_power,
    reference_policy: str = "periodic",
) -> CaseMeasurement:
    """Measure ``workload``; an out-of-memory is retried once after ``free_caches`` and the plugin's own buffers.

    ``power_skip``: whether the power window is measured, from the median; ``reference_policy``: when the machine
    reference is read (``measure``)."""
    started = time.perf_counter()
    try:
        measurement = measure(workload, device, config, power_skip=power_skip, reference_policy=reference_policy)
    except DoesNotFit:
        # measure() already collected every cycle (a thorough release) before it raised; what is freed now goes by
        # reference counting, so a plain release hands it back without walking every object once more.
        free_caches()
        free_flush_buffers()
        release_memory(device)
        try:
            measurement = measure(
                workload, device, config, retry_follows=False, power_skip=power_skip, reference_policy=reference_policy
            )
        except DoesNotFit as oom:  # again, in a clean state: it does not fit
            return does_not_fit(str(oom)).with_phase("out_of_memory", (time.perf_counter() - started) * 1e3)
        retry_ms = sum(ms for phase, ms in measurement.phases_ms.items() if phase != "lead_spin")  # inside others
        failed_ms = (time.perf_counter() - started) * 1e3 - retry_ms
        measurement = dataclasses.replace(
            measurement,
            memory_note=measurement.memory_note or CLEAN_RETRY_NOTE,
            phases_ms={**measurement.phases_ms, "out_of_memory": round(failed_ms, 3)},
        )
    return summarise(measurement, device, config, flops=flops, bytes_moved=bytes_moved)


def summarise(
    measurement: Measurement,
    device: torch.device,
    config: TimingConfig,
    *,
    flops: float | None = None,
    bytes_moved: int | None = None,
) -> CaseMeasurement:
    """The measurement as a case's numbers: a median only over enough samples, and the rates it gives."""
    timing = measurement.timing
    common = CaseMeasurement(
        fits=True,
        reason=measurement.memory_note,
        timing=timing,
        peak_bytes=measurement.peak_bytes,
        free_bytes=measurement.free_bytes,
        gpu=dict(measurement.gpu),
        phases_ms=dict(measurement.phases_ms),
    )
    if len(timing.samples_ms) < max(3, config.min_samples // 2):
        reason = (
            f"too few samples: {len(timing.samples_ms)} kept, {timing.info.get('discarded', 0)} discarded as "
            f"throttled (SM clock under {timing.info.get('throttle_threshold_mhz')} MHz) after "
            f"{timing.info.get('paused_s')} s of pauses"
        )
        return dataclasses.replace(common, reason=reason)
    median_ms = timing.median_ms
    gbps = bytes_moved / (median_ms * 1e-3) / 1e9 if bytes_moved else None
    ceiling = copy_bandwidth_gbps(str(device)) if gbps is not None else None
    return dataclasses.replace(
        common,
        median_ms=median_ms,
        iqr_ms=timing.iqr_ms,
        tflops=flops / (median_ms * 1e-3) / 1e12 if flops else None,
        bytes_moved=bytes_moved or None,
        gbps=gbps,
        bandwidth_share=gbps / ceiling if gbps is not None and ceiling else None,
    )
