"""Known extra work appended to a workload: the slowdown `attnperf calibrate` and the sensitivity study inject.

Not a one-thread sleep (which draws no power, so the GPU re-boosts around it, and is sized in
cycles, so its length follows the clock): a dense matmul in the workload's dtype for
compute-bound cases (tensor cores, drawing power as attention does) or a device-to-device copy for
memory-bound ones, on the same stream, inside the timed span. Its size is calibrated in *time*
(the injection timed alone behind a lead spin, as the case's samples are, sizes interpolated), and
what it delivers is measured: the slowdown a trial reports is the slowed median over the plain one,
never the intended fraction.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from .memory import Workload

MATMUL_K = 4096  # inner size on a GPU: ~34 GFLOP per 1024 rows, long enough to draw power, fine-grained in rows
# A matmul of few rows streams its whole K x K right operand (32 MiB at 4096) whatever the rows, so its time does
# not grow with rows until that is covered: likely why the live validation's +3 % and +5 % rows of sdpa-flash 4K
# (0.51 ms) delivered alike (+3.7 %, +3.6 %). The first target on a GPU picks the widest K whose smallest matmul
# takes at most a quarter of it.
INNER_CHOICES = (4096, 2048, 1024, 512, 256)
FLOOR_SHARE = 0.25
CPU_MATMUL_K = 128  # a CPU case is a few microseconds: the injection must be able to be that small
MIN_ROWS, MAX_ROWS = 16, 1 << 16
COPY_MIN_BYTES, COPY_MAX_BYTES = 1 << 16, 1 << 32


class Injector:
    """Extra work of a chosen size: ``wrap(workload, size)`` runs the workload, then the injection."""

    def __init__(self, device: torch.device, dtype: torch.dtype, kind: str = "compute") -> None:
        if kind not in ("compute", "memory"):
            raise ValueError(f"injection kind {kind!r} is not 'compute' or 'memory'")
        self.device, self.kind = device, kind
        self.dtype = dtype if dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float16
        if device.type == "cpu" and self.dtype != torch.float32:
            self.dtype = torch.float32
        self._buffers: dict[str, torch.Tensor] = {}
        self.inner = MATMUL_K if device.type == "cuda" else CPU_MATMUL_K
        self.inner_fixed = device.type != "cuda" or kind != "compute"  # a size means rows of one inner size

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        current = self._buffers.get(name)
        if current is None or current.numel() < torch.Size(shape).numel():
            self._buffers[name] = current = torch.ones(shape, dtype=dtype, device=self.device)
        return current.flatten()[: torch.Size(shape).numel()].view(shape)

    def limits(self) -> tuple[int, int]:
        # on a GPU a narrower inner size needs more rows for the same work: the row limit grows with it (a CPU's
        # inner size is its own, and its limit stays)
        rows = MAX_ROWS * (MATMUL_K // self.inner) ** 2 if self.device.type == "cuda" else MAX_ROWS
        return (MIN_ROWS, rows) if self.kind == "compute" else (COPY_MIN_BYTES, COPY_MAX_BYTES)

    def injection(self, size: int) -> Callable[[], Any]:
        """The extra work alone, of ``size`` rows (compute) or bytes (memory); buffers made now, not while timed."""
        if self.kind == "compute":
            rows = max(MIN_ROWS, int(size))
            left = self._buffer("left", (rows, self.inner), self.dtype)
            right = self._buffer("right", (self.inner, self.inner), self.dtype)
            out = self._buffer("out", (rows, self.inner), self.dtype)
            return lambda: torch.mm(left, right, out=out)
        count = max(1, int(size) // 2)
        source = self._buffer("source", (count,), torch.float16)
        target = self._buffer("target", (count,), torch.float16)
        return lambda: target.copy_(source)

    def wrap(self, workload: Workload, size: int) -> Workload:
        extra = self.injection(size)

        def slowed() -> Any:
            output = workload()
            extra()
            return output

        return slowed

    LEAD_MS = 0.2  # a spin queued before the start event: longer than the host takes to launch the injection

    def time_ms(self, size: int, repeats: int = 9) -> float:
        """Median time of the injection alone (events on CUDA, behind a lead spin).

        Without the lead the span would hold the host's launch of the injection too (the GPU reaches the start
        event at once and waits for the kernel): microseconds that a small injection (3 % of a 0.5 ms case,
        or a decode step's copy) would be sized short by, and deliver less than asked.
        """
        extra = self.injection(size)
        extra()
        lead_cycles = 0
        if self.device.type == "cuda":
            from .timing import cycles_per_ms

            lead_cycles = int(self.LEAD_MS * cycles_per_ms(self.device))
        times = []
        for _ in range(repeats):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda._sleep(lead_cycles)
                start.record()
                extra()
                end.record()
                end.synchronize()
                times.append(float(start.elapsed_time(end)))
            else:
                began = time.perf_counter()
                extra()
                times.append((time.perf_counter() - began) * 1e3)
        return statistics.median(times)

    def fit_inner(self, target_ms: float) -> int:
        """The widest inner size whose smallest matmul takes at most FLOOR_SHARE of ``target_ms`` (the narrowest
        if none does); fixed from then on, so every size this injector gave means rows of one inner size."""
        if not self.inner_fixed:
            for inner in INNER_CHOICES:
                self.inner = inner
                if self.time_ms(MIN_ROWS) <= FLOOR_SHARE * target_ms:
                    break
            self.inner_fixed = True
        return self.inner

    def size_for(self, target_ms: float) -> int:
        """The size whose injection takes about ``target_ms``: timed at two sizes, interpolated linearly. The first
        call on a GPU also picks the matmul's inner size (``fit_inner``): ask for the smallest target first."""
        self.fit_inner(target_ms)
        low, high = self.limits()
        small = max(low, min(high, low * 4))
        large = small
        large_ms = self.time_ms(large)
        while large_ms < 4 * max(target_ms, 1e-4) and large < high:
            large = min(high, large * 4)
            large_ms = self.time_ms(large)
        small_ms = self.time_ms(small)
        if large == small or large_ms <= small_ms:
            return int(max(low, min(high, large * target_ms / max(large_ms, 1e-6))))
        per_unit = (large_ms - small_ms) / (large - small)
        return int(max(low, min(high, small + (target_ms - small_ms) / per_unit)))

    def release(self) -> None:
        self._buffers.clear()


def delivered(plain_median_ms: float, slowed_median_ms: float) -> float:
    """The slowdown a trial really injected: slowed over plain, minus one."""
    return slowed_median_ms / plain_median_ms - 1.0
