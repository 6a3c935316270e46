"""Peak memory of one call, out-of-memory detection, and handing memory back. No pass/fail logic.

CUDA: the rise of ``max_memory_allocated`` over what was allocated before the call. CPU: the most
bytes the call's own allocations held at once in torch's CPU allocator (read through the profiler).
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..spec.shapes import AttnShape

Workload = Callable[[], Any]


class DoesNotFit(Exception):
    """The workload ran out of device memory; the memory has been handed back."""


@dataclass(frozen=True)
class InputsDoNotFit:
    """What the ``qkv`` fixture gives when the inputs themselves cannot be allocated: measured as "does not fit"."""

    shape: AttnShape
    seed: int
    reason: str

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{name!r}: this case's inputs were never allocated; they do not fit: {self.reason}")


# How an allocation failure reads when it is not a torch.OutOfMemoryError: CUDA libraries raising a plain
# RuntimeError, and torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory: you tried to ...").
_OUT_OF_MEMORY_TEXTS = ("out of memory", "cudnn_status_alloc_failed", "can't allocate memory")


def describe_error(error: BaseException) -> str:
    """'Type: first line of the message' (just the type for an empty message, as MemoryError() has)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def is_out_of_memory(error: BaseException) -> bool:
    """True for torch's OutOfMemoryError, Python's MemoryError, and allocation failures raised as RuntimeError."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(fragment in text for fragment in _OUT_OF_MEMORY_TEXTS)


def release_memory(device: torch.device, *, thorough: bool = False) -> None:
    """Hand cached memory back so the next case starts where this one started.

    A full collection walks every object the process holds: once torch.compile has run that is hundreds
    of thousands, about 0.2 s a call on a CPU (it was 40 % of the CPU kernel suite's wall time). So what
    survives a collection is frozen (gc.freeze: later collections skip it), and the next one walks only
    what is newer. A reference cycle among frozen objects is found only by a thorough release, which
    unfreezes first: the plugin asks for one before it decides that a case does not fit, and between
    test modules.
    """
    if thorough:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Kineto prints a 'USDT: profiler_start/stop' line to fd 2 at every start and stop, at any log level."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_peak_memory(workload: Workload) -> tuple[Any, int | None, str | None]:
    """Run once; return (output, peak bytes the call held in torch's CPU allocator, note if unmeasurable).

    The peak comes from the allocator itself: with memory profiling on, c10's CPU allocator reports every
    allocation and free (size, address) to the profiler. Replaying them gives the most bytes the call's own
    allocations held at once - exact and repeatable, where the process's resident set (the earlier method)
    moved by tens of percent with glibc's heap and page reuse. Memory freed by the call that it did not
    allocate is not subtracted, so the figure does not depend on what earlier tests left behind.
    """
    from torch.autograd import profiler

    if not torch.profiler.kineto_available():
        return workload(), None, "peak memory on the CPU needs torch's profiler (Kineto), missing from this build"
    if torch._C._autograd._profiler_enabled():
        # Starting a second session would end the user's own (torch.profiler around the test) with no events.
        return workload(), None, "peak memory on the CPU not measured: torch's profiler is already running"
    recorder = profiler.profile(profile_memory=True, use_kineto=True)
    with _quiet_native_stderr():
        recorder.__enter__()
    try:
        output = workload()
    finally:
        with _quiet_native_stderr():
            recorder.__exit__(None, None, None)
    if recorder.kineto_results is None:
        return output, None, "peak memory on the CPU not measured: the profiler returned no events"
    return output, _allocation_peak(recorder.kineto_results.experimental_event_tree()), None


def _allocation_peak(roots: list[Any]) -> int:
    """The most bytes held at once by the CPU allocations among these profiler events, replayed in time order."""
    from torch._C._profiler import _EventType

    allocations: list[tuple[int, int, int]] = []
    stack = list(roots)
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            fields = event.extra_fields
            allocations.append((event.start_time_ns, fields.alloc_size, fields.ptr))
    allocations.sort(key=lambda allocation: allocation[0])
    live: dict[int, int] = {}
    held = peak = 0
    for _, size, address in allocations:
        if size > 0:
            live[address] = size
            held += size
            peak = max(peak, held)
        elif address in live:  # a free of memory this call allocated (not of what existed before it)
            held -= live.pop(address)
    return peak


def cuda_peak_memory(workload: Workload, device: torch.device) -> tuple[Any, int]:
    """Run once; return (output, rise of max_memory_allocated over what was allocated before)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    allocated_before = torch.cuda.memory_allocated(device)
    output = workload()
    torch.cuda.synchronize(device)
    return output, torch.cuda.max_memory_allocated(device) - allocated_before
