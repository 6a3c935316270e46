"""The machine reference: a fixed workload whose time and SM clock say how the machine moved (``gate/machine.py``).

A dense fp16 matmul loop, the same on every run and every card of a model: compute-bound (its
time follows its clock, beta 1) and heavy enough to reach the power cap, as the big attention
kernels do, so its clock at the cap falls and rises with the machine's state (temperature, the
unit, its power limit), not with any kernel under test. It settles first, at least ``SETTLE_MS``
of GPU time and until its chunk time is steady (the boost -> power-cap step comes 50-100 ms into
sustained load; at most ``SETTLE_MAX_MS``), then runs ``MEASURE_MS`` timed with events and
bracketed by the SM-0 clock stamps. It is measured at session start and then before a case
whenever the last reading is older than ``INTERVAL_S``: ~0.15-0.3 s every 20 s, about 1 % of a run.
With ``--attnperf-machine-reference=adjacent`` it is also read right before and right after each case
whose peak-memory call (the second call, after the first one's GPU work has finished) took
``LONG_CALL_MS`` or more of wall time (the kernels that may reach the power cap), so that a baseline's
reading and a gated run's are taken in the same state: next to the same case, not in whatever state
the last 20 s left (a cool session start, say). The reading after a long case is the latest one, so
the shorter cases that follow within 20 s are judged by it.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import torch

from ..gate.machine import Reference
from .clock import probe_for

SIZE = 4096  # 137 GFLOP per matmul: ~0.2 ms on an H100, long enough to be timed in a few calls
CHUNK = 8  # matmuls per launch batch while settling
SETTLE_MS, SETTLE_MAX_MS, MEASURE_MS = 100.0, 300.0, 40.0
STEADY = 0.01  # the median of the last 5 chunks within 1 % of the 5 before them
INTERVAL_S = 20.0
# Adjacent readings are for cases whose peak-memory call (wall time: the kernel and its launch) took this long. On an
# H100 every case at the power cap for most of its timing had a median of 2.6 ms or more, and so do some that never
# reach it (docs/results/h100/2026-12/unit-de84f1cb, besides sub-millisecond kernels whose NVML flag is an artefact).
LONG_CALL_MS = 2.5

_latest: dict[torch.device, tuple[float, Reference]] = {}


def _operands(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same values every time (seeded); made per probe and dropped, so no case's memory sees them."""
    generator = torch.Generator(device=device).manual_seed(0)
    left = torch.randn(SIZE, SIZE, device=device, dtype=torch.float16, generator=generator)
    right = torch.randn(SIZE, SIZE, device=device, dtype=torch.float16, generator=generator)
    return left, right, torch.empty_like(left)


def _timed(calls: int, run: Any) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        run()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end))


def _steady(chunks: list[float]) -> bool:
    if len(chunks) < 10:
        return False
    last, before = statistics.median(chunks[-5:]), statistics.median(chunks[-10:-5])
    return abs(last / before - 1) <= STEADY


def probe(device: torch.device) -> Reference:
    """One reading: settle at load, then the time per matmul (ms) and the SM clock over the timed block."""
    left, right, out = _operands(device)

    def run() -> None:
        torch.mm(left, right, out=out)

    chunks: list[float] = []
    while sum(chunks) < SETTLE_MAX_MS and not (sum(chunks) >= SETTLE_MS and _steady(chunks)):
        chunks.append(_timed(CHUNK, run))
    per_call = statistics.median(chunks[-5:]) / CHUNK
    calls = max(4, math.ceil(MEASURE_MS / max(per_call, 1e-3)))
    clock = probe_for(device)
    clock.prepare(1)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    clock.before(0)
    start.record()
    for _ in range(calls):
        run()
    end.record()
    clock.after(0)
    torch.cuda.synchronize(device)
    ms = float(start.elapsed_time(end)) / calls
    return Reference(ms=ms, clock_mhz=clock.read(1)[0])


def current(device: torch.device, *, now: float | None = None) -> Reference | None:
    """The latest reading, measured anew when older than INTERVAL_S; None off CUDA."""
    if device.type != "cuda":
        return None
    moment = time.monotonic() if now is None else now
    last = _latest.get(device)
    if last is None or moment - last[0] > INTERVAL_S:
        last = (moment, probe(device))
        _latest[device] = last
    return last[1]


def age_s(device: torch.device, *, now: float | None = None) -> float | None:
    """Seconds since the latest reading was taken (a case is credited from a reading up to INTERVAL_S old)."""
    last = _latest.get(device)
    if last is None:
        return None
    return (time.monotonic() if now is None else now) - last[0]


def adjacent(policy: str, peak_call_ms: float | None) -> bool:
    """Whether a case is read right before and after (``policy`` from --attnperf-machine-reference; ``peak_call_ms``:
    the wall time of its peak-memory call, None where none was timed)."""
    return policy == "adjacent" and peak_call_ms is not None and peak_call_ms >= LONG_CALL_MS


def refresh(device: torch.device) -> Reference | None:
    """Measure now (session start, or next to a long case), whatever the age of the last reading."""
    _latest.pop(device, None)
    return current(device)
