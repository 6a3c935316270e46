"""Peak memory of one call, out-of-memory detection, and handing memory back. No pass/fail logic.

CUDA: the rise of ``max_memory_allocated`` over what was allocated before the call. CPU: the
rise of the process's resident-set high-water mark (reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable
from typing import Any

import torch

Workload = Callable[[], Any]


class DoesNotFit(Exception):
    """The workload ran out of device memory; the memory has been handed back."""


def is_out_of_memory(error: BaseException) -> bool:
    """True for torch's OutOfMemoryError and for libraries that raise it as a plain RuntimeError."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "cudnn_status_alloc_failed" in text)


def release_memory(device: torch.device) -> None:
    """Hand cached memory back so the next case starts where this one started."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


_libc: Any = None


def _trim_heap() -> None:
    """Return freed heap pages to the OS so new allocations raise the resident set again."""
    global _libc
    if not sys.platform.startswith("linux"):
        return
    try:
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _read_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_peak_memory(workload: Workload) -> tuple[Any, int | None, str | None]:
    """Run once; return (output, rise of the resident-set peak in bytes, note if unmeasurable)."""
    gc.collect()
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current resident set
    except OSError:
        return workload(), None, "peak memory on the CPU needs Linux's /proc/self/clear_refs"
    resident_before = _read_status_kib("VmRSS")
    output = workload()
    peak = _read_status_kib("VmHWM")
    if resident_before is None or peak is None:
        return output, None, "could not read VmRSS/VmHWM from /proc/self/status"
    return output, max(0, peak - resident_before) * 1024, None


def cuda_peak_memory(workload: Workload, device: torch.device) -> tuple[Any, int]:
    """Run once; return (output, rise of max_memory_allocated over what was allocated before)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    allocated_before = torch.cuda.memory_allocated(device)
    output = workload()
    torch.cuda.synchronize(device)
    return output, torch.cuda.max_memory_allocated(device) - allocated_before


