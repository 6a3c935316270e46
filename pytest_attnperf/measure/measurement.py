"""One workload measured: its peak memory (one call), then its timing. An out-of-memory is DoesNotFit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..spec.options import TimingConfig
from .memory import (
    DoesNotFit,
    Workload,
    cpu_peak_memory,
    cuda_peak_memory,
    describe_error,
    is_out_of_memory,
    release_memory,
)
from .timing import Timing, time_cpu, time_cuda


@dataclass(frozen=True)
class Measurement:
    """What one workload cost: timing, peak memory above its inputs, and its output."""

    timing: Timing
    peak_bytes: int | None
    memory_note: str | None
    output: Any


def measure(workload: Workload, device: torch.device, config: TimingConfig) -> Measurement:
    """Peak memory of one call (whose output is kept), then the timing; OOM -> DoesNotFit."""
    failure: str | None = None
    peak_bytes: int | None
    release_memory(device)  # a failed case before this one may still hold tensors in a reference cycle
    try:
        workload()  # first call: compile/autotune, so it is not counted as the workload's peak
        if device.type == "cuda":
            output, peak_bytes = cuda_peak_memory(workload, device)
            memory_note = None
        else:
            output, cpu_peak, memory_note = cpu_peak_memory(workload)
            peak_bytes = cpu_peak
        timing = time_cuda(workload, device, config) if device.type == "cuda" else time_cpu(workload, config)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        failure = describe_error(error)
    if failure is not None:
        # The traceback (and every tensor its frames held) is gone once the except block ends.
        release_memory(device)
        raise DoesNotFit(failure)
    return Measurement(timing=timing, peak_bytes=peak_bytes, memory_note=memory_note, output=output)
