"""Which kernels one call of a workload runs, read with torch.profiler (after the case is timed).

On CUDA the CUDA activity's kernel, memcpy and memset names; on a CPU the innermost ``aten::`` ops
that do work (view and allocation ops aside: e.g. SDPA's chosen CPU kernel). The first events of a profiling
session can be dropped (pytorch#192021), so three calls are profiled and the last one kept, and
a fingerprint whose last two calls disagree is marked unstable. Names are normalised by
:mod:`pytest_attnperf.gate.dispatch`. Profiling comes after all timing of the case: an active
profiler would change the times it measures.
"""

from __future__ import annotations

from typing import Any

import torch

from ..gate.dispatch import family_name, fingerprint
from .memory import Workload

PROFILED_CALLS = 3
# CPU ops that only make views or empty tensors: not a choice of kernel
_METADATA_OPS = frozenset(
    "aten::" + name
    for name in [
        "as_strided",
        "view",
        "_reshape_alias",
        "_unsafe_view",
        "reshape",
        "resolve_conj",
        "resolve_neg",
        "empty",
        "empty_strided",
        "empty_like",
        "resize_",
        "expand",
        "transpose",
        "permute",
        "t",
        "unsqueeze",
        "squeeze",
        "slice",
        "select",
        "alias",
        "detach",
        "lift_fresh",
        "contiguous",
        "to",
        "_to_copy",
    ]
)


def _works(event: Any) -> bool:
    return str(event.name).startswith("aten::") and event.name not in _METADATA_OPS


def _names(events: Any, device: torch.device) -> list[str]:
    if device.type == "cuda":
        cuda = torch.autograd.DeviceType.CUDA  # type: ignore[attr-defined]
        chosen = [event for event in events if event.device_type == cuda]
    else:
        chosen = [event for event in events if _works(event) and not any(_works(c) for c in event.cpu_children)]
    chosen.sort(key=lambda event: event.time_range.start)
    return [str(event.name) for event in chosen]


def kernel_names(workload: Workload, device: torch.device, calls: int = PROFILED_CALLS) -> list[list[str]]:
    """The kernel names of each of ``calls`` profiled calls, in launch order."""
    from torch.profiler import ProfilerActivity, profile

    activity = ProfilerActivity.CUDA if device.type == "cuda" else ProfilerActivity.CPU
    per_call = []
    for _ in range(calls):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        with profile(activities=[activity]) as profiler:
            workload()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        per_call.append(_names(profiler.events(), device))
    return per_call


def capture(workload: Workload, device: torch.device) -> dict[str, Any] | None:
    """The dispatch fingerprint of one call; None when the profiler cannot run here."""
    try:
        per_call = kernel_names(workload, device)
    except Exception:  # a profiler already running (the user's), or none in this build: no fingerprint
        return None
    if not per_call:
        return None
    result = fingerprint(per_call[-1])
    if len(per_call) > 1 and [family_name(n) for n in per_call[-2]] != result["families"]:
        result["unstable"] = True  # the kernels differ from call to call (autotuning, a dropped event)
    return result
