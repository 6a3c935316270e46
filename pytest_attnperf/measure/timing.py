"""How long a workload takes. No pass/fail logic lives here.

CUDA: CUDA events around each sample, an L2 flush before each sample outside the timed span,
a lead spin so the events bracket kernels rather than Python's launches, a warm-up, and at
least ``min_samples`` samples whatever the kernel length. CPU: a monotonic clock around whole
(synchronous) calls.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..spec.options import TimingConfig
from .memory import Workload


@dataclass(frozen=True)
class Timing:
    """Per-sample durations in milliseconds and their summary statistics."""

    samples_ms: tuple[float, ...]
    clock: str

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)

    @property
    def iqr_ms(self) -> float:
        if len(self.samples_ms) < 2:
            return 0.0
        quartiles = statistics.quantiles(self.samples_ms, n=4, method="inclusive")
        return quartiles[2] - quartiles[0]

    @property
    def stdev_ms(self) -> float:
        return statistics.stdev(self.samples_ms) if len(self.samples_ms) > 1 else 0.0

    def quantiles(self, count: int) -> list[float]:
        """``count`` evenly spaced quantiles: the shape of the distribution in a few numbers."""
        ordered = sorted(self.samples_ms)
        last = len(ordered) - 1
        return [ordered[round((index + 0.5) / count * last)] for index in range(count)]

    def summary(self) -> dict[str, float | int]:
        return {
            "median": self.median_ms,
            "iqr": self.iqr_ms,
            "mean": self.mean_ms,
            "stdev": self.stdev_ms,
            "min": self.min_ms,
            "max": self.max_ms,
            "samples": len(self.samples_ms),
        }


class NotCapturable(Exception):
    """The workload cannot be captured in a CUDA graph (it synchronises or allocates on the host)."""


# ---------------------------------------------------------------- time


_flush_buffers: dict[torch.device, torch.Tensor] = {}


def l2_flush_buffer(device: torch.device) -> torch.Tensor:
    """A buffer twice the L2 size (at least 64 MiB); zeroing it evicts the inputs from L2."""
    if device not in _flush_buffers:
        properties = torch.cuda.get_device_properties(device)
        size = max(2 * int(getattr(properties, "L2_cache_size", 0)), 64 << 20)
        _flush_buffers[device] = torch.empty(size, dtype=torch.int8, device=device)
    return _flush_buffers[device]


def free_flush_buffers() -> None:
    _flush_buffers.clear()


def _sample_count(estimate_ms: float, config: TimingConfig) -> int:
    wanted = int(config.rep_ms / max(estimate_ms, 1e-6))
    return max(config.min_samples, min(config.max_samples, wanted))


def _cycles_per_ms(device: torch.device) -> float:
    """Clock rate of torch.cuda._sleep's spin kernel, measured (the SM clock varies)."""
    if device not in _sleep_rates:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(100_000)
        start.record()
        torch.cuda._sleep(2_000_000)
        end.record()
        end.synchronize()
        _sleep_rates[device] = 2_000_000 / max(start.elapsed_time(end), 1e-3)
    return _sleep_rates[device]


_sleep_rates: dict[torch.device, float] = {}


def spin_up(device: torch.device, seconds: float = 0.3) -> None:
    """Run dense matmuls so an idle GPU's clocks ramp up before the first measurement."""
    a = torch.randn(4096, 4096, device=device, dtype=torch.float16)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize(device)


def time_cuda(workload: Workload, device: torch.device, config: TimingConfig) -> Timing:
    """CUDA-event timing with an L2 flush before every sample (outside the timed span).

    A short spin kernel is queued ahead of each sample, so the GPU is still busy while the host
    launches the workload: the events then bracket the kernels, not Python's launch overhead.
    """
    flush = l2_flush_buffer(device) if config.flush_l2 else None
    stream = torch.cuda.current_stream(device)
    target: Workload = workload
    if config.cuda_graph:
        target = _capture_graph(workload, device)
    cycles_per_ms = _cycles_per_ms(device)
    lead_cycles = 0

    def run_once() -> tuple[float, float]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        if flush is not None:
            flush.zero_()
        if lead_cycles:
            torch.cuda._sleep(lead_cycles)
        start.record(stream)
        host_start = time.perf_counter()
        target()
        host_ms = (time.perf_counter() - host_start) * 1e3
        end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end)), host_ms

    # Warm up: compilation, autotuning and handle creation stay out of the numbers.
    warmup_deadline = time.perf_counter() + config.warmup_ms / 1e3
    estimate_ms, host_ms = run_once()
    while time.perf_counter() < warmup_deadline:
        estimate_ms, host_ms = run_once()
    # Enough lead to cover the host's launch time, with margin; capped so long kernels pay little.
    lead_cycles = int(min(max(2.0 * host_ms, 0.02), 5.0) * cycles_per_ms)
    count = _sample_count(estimate_ms, config)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
    for start, end in zip(starts, ends, strict=True):
        if flush is not None:
            flush.zero_()
        torch.cuda._sleep(lead_cycles)
        start.record(stream)
        target()
        end.record(stream)
        # Keep the host from running ahead by more than one sample: the lead stays a lead.
        end.synchronize()
    samples = tuple(float(start.elapsed_time(end)) for start, end in zip(starts, ends, strict=True))
    return Timing(samples, clock="cuda-graph-events" if config.cuda_graph else "cuda-events")


def _capture_graph(workload: Workload, device: torch.device) -> Workload:
    """Capture one call in a CUDA graph so replays carry no launch overhead."""
    side_stream = torch.cuda.Stream(device)
    side_stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side_stream):
        for _ in range(2):
            workload()  # graph capture needs allocations and lazy init done beforehand
    torch.cuda.current_stream(device).wait_stream(side_stream)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            keep_alive = workload()
    except RuntimeError as error:
        raise NotCapturable(f"cannot be captured in a CUDA graph: {str(error).splitlines()[0]}") from None
    torch.cuda.synchronize(device)

    def replay() -> Any:
        graph.replay()
        return keep_alive

    return replay


def time_cpu(workload: Workload, config: TimingConfig) -> Timing:
    """Monotonic-clock timing of whole calls (CPU work is synchronous)."""
    warmup_deadline = time.perf_counter() + config.warmup_ms / 1e3
    start = time.perf_counter_ns()
    workload()
    estimate_ms = (time.perf_counter_ns() - start) / 1e6
    while time.perf_counter() < warmup_deadline:
        start = time.perf_counter_ns()
        workload()
        estimate_ms = (time.perf_counter_ns() - start) / 1e6
    samples = []
    for _ in range(_sample_count(estimate_ms, config)):
        start = time.perf_counter_ns()
        workload()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return Timing(tuple(samples), clock="perf_counter")


