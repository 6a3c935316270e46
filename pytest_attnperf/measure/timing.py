"""How long a workload takes, and at which SM clock. No pass/fail logic lives here.

CUDA, per sample, all on one stream: the L2 flush (outside the span), a lead spin so the events
bracket kernels rather than Python's launches, a clock stamp, the start event, the workload, the
end event, a clock stamp, and a host sync. The warm-up is the same loop until time and clock
have settled (:mod:`.sampling`); throttled samples are discarded; every kept sample's time and
clock are returned in time order, with the warm-up's. CPU: a monotonic clock around whole calls
under the same warm-up and sampling rules, without a clock.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..spec.options import TimingConfig
from .clock import ClockProbe, NoClock, probe_for, probe_note
from .memory import Workload
from .sampling import Collected, Sample, WarmUp, collect, sample_count, throttle_threshold, warm_up

CPU_WARMUP_CAP_MS = 200.0  # a CPU has no boost -> power-cap step to wait out: a short cap keeps CPU runs quick
# A CPU run is a smoke run on a shared host, whose median mostly never reaches +-0.3 % (preempted samples): it ran
# to the caps, 21 s of the CPU main job's 55 s. Its first batch and caps come from 25 ms of samples, not 100.
CPU_REP_CAP_MS = 25.0


@dataclass(frozen=True)
class Timing:
    """Per-sample durations (ms) and SM clocks (MHz), in time order, with the warm-up's and how it went."""

    samples_ms: tuple[float, ...]
    clock: str  # the timer
    clocks_mhz: tuple[float | None, ...] = ()
    warmup_ms: tuple[float, ...] = ()
    warmup_clocks_mhz: tuple[float | None, ...] = ()
    clock_source: str = "none"
    info: dict[str, Any] = field(default_factory=dict)

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

    @property
    def calls(self) -> int:
        """Workload calls in the warm-up and the sampling (for energy per call)."""
        return len(self.warmup_ms) + len(self.samples_ms) + int(self.info.get("discarded", 0))

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


def timed(
    source: Any,
    config: TimingConfig,
    *,
    gpu: bool,
    timer: str,
    clock_source: str,
    max_clock_mhz: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Timing:
    """Warm up ``source`` until steady, then collect the samples: the rules of :mod:`.sampling`, any timer."""
    cap_ms = config.warmup_ms if gpu else min(config.warmup_ms, CPU_WARMUP_CAP_MS)
    rep_ms = config.rep_ms if gpu else min(config.rep_ms, CPU_REP_CAP_MS)
    warmup: WarmUp = warm_up(source, cap_ms=cap_ms, gpu=gpu)
    if hasattr(source, "fix_lead"):
        source.fix_lead()
    # A GPU's kernel times are not preempted: the minimum, then until the median is known. A CPU's are.
    count = (
        config.min_samples if gpu else sample_count(warmup.estimate_ms, rep_ms, config.min_samples, config.max_samples)
    )
    threshold = throttle_threshold(max_clock_mhz, warmup.samples) if gpu else None
    sampling_started = time.perf_counter()
    collected: Collected = collect(
        source,
        count,
        threshold_mhz=threshold,
        rep_ms=rep_ms,
        max_samples=config.max_samples,
        sleep=sleep,
        bounded_from=None if gpu else config.min_samples,  # a GPU's samples are not preempted
    )
    sampling_wall_ms = (time.perf_counter() - sampling_started) * 1e3
    info: dict[str, Any] = {
        "steady": warmup.steady,
        "warmup_calls": len(warmup.samples),
        "warmup_wall_ms": round(warmup.wall_ms, 3),
        "sampling_wall_ms": round(sampling_wall_ms, 3),
        "warmup_time_spread": warmup.time_spread,
        "warmup_clock_spread": warmup.clock_spread,
        "planned_samples": count,
        "rep_ms": rep_ms,  # the sampling time the first batch and the caps came from (capped on a CPU)
        "extended": collected.extended,
        "median_half_width": round(collected.half_width, 6) if math.isfinite(collected.half_width) else None,
        "discarded": len(collected.discarded),
        "discarded_clock_mhz": [sample.clock_mhz for sample in collected.discarded],
        "paused_s": round(collected.paused_s, 3),
        "throttle_threshold_mhz": threshold,
        "exhausted": collected.exhausted,
    }
    lead_ms = getattr(source, "lead_ms", None)
    if lead_ms is not None:
        info["lead_ms"] = round(lead_ms, 4)
        info["lead_total_ms"] = round(source.lead_total_ms, 3)  # GPU time spent spinning, warm-up included
        info["host_launch_ms"] = round(source.host_ms, 4)
        if source.sampled:  # a fact, not an estimate: whether the GPU had passed the start event by the launch's end
            info["lead_overrun_share"] = round(source.overruns / source.sampled, 4)
    return Timing(
        samples_ms=tuple(sample.time_ms for sample in collected.kept),
        clock=timer,
        clocks_mhz=tuple(sample.clock_mhz for sample in collected.kept),
        warmup_ms=tuple(sample.time_ms for sample in warmup.samples),
        warmup_clocks_mhz=tuple(sample.clock_mhz for sample in warmup.samples),
        clock_source=clock_source,
        info=info,
    )


class NotCapturable(Exception):
    """The workload cannot be captured in a CUDA graph (it synchronises or allocates on the host)."""


# ---------------------------------------------------------------- CUDA


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


_sleep_rates: dict[torch.device, float] = {}


def cycles_per_ms(device: torch.device) -> float:
    """Clock rate of torch.cuda._sleep's spin kernel, measured once (only sizes the lead spin)."""
    if device not in _sleep_rates:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(100_000)
        start.record()
        torch.cuda._sleep(2_000_000)
        end.record()
        end.synchronize()
        _sleep_rates[device] = 2_000_000 / max(start.elapsed_time(end), 1e-3)
    return _sleep_rates[device]


def spin_up(device: torch.device, seconds: float = 0.3) -> None:
    """Run dense matmuls so an idle GPU's clocks ramp up before the first measurement."""
    a = torch.randn(4096, 4096, device=device, dtype=torch.float16)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize(device)


class CudaSource:
    """Isolated CUDA samples: flush, lead spin, stamp, start event, workload, end event, stamp, sync.

    The lead spin keeps the GPU busy while the host enqueues the stamp, the events and the workload, so
    the timed span holds the kernels and no launch gap. It is sized from this case's own host launch
    time, measured during the warm-up (the GPU spins meanwhile): a margin over its 90th percentile,
    with a floor; a fixed lead would spin a millisecond before a 15 us kernel. Past ``COVER_MS`` it
    covers only the part of the launch that the kernels themselves do not hide (see :func:`lead_for`).
    """

    MIN_LEAD_MS, COVER_MS, MAX_LEAD_MS = 0.02, 5.0, 50.0
    MIN_LAUNCHES_PAST_COVER = 10  # a 90th percentile of fewer is their maximum: one slow early launch would set it
    LEAD_MARGIN, LEAD_SLACK_MS = 1.25, 0.01  # over the host's 90th-percentile launch time
    HOST_WINDOW = 64  # the launch times the lead is sized from: the warm-up's latest

    def __init__(self, target: Workload, device: torch.device, probe: ClockProbe, flush: torch.Tensor | None) -> None:
        self.target, self.device, self.probe, self.flush = target, device, probe, flush
        self.stream = torch.cuda.current_stream(device)
        self.rate = cycles_per_ms(device)
        self.lead_ms = 0.05
        self.lead_total_ms = 0.0
        self.host_ms = 0.0  # the 90th-percentile host launch time the lead was sized from
        self.host_times: list[float] = []
        self.span_times: list[float] = []  # the warm-up's spans beside its launch times
        self.sampled = self.overruns = 0  # after the warm-up: samples, and those whose lead ended before the launch
        self.fixed = False

    def fix_lead(self) -> None:
        """After the warm-up the lead stays as it is, so every sample has the same duty cycle."""
        self.fixed = True

    def take(self, count: int) -> list[Sample]:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
        self.probe.prepare(count)
        lead_cycles = int(self.lead_ms * self.rate)
        hosts = []
        for index in range(count):
            if self.flush is not None:
                self.flush.zero_()
            torch.cuda._sleep(lead_cycles)
            host_start = time.perf_counter()
            self.probe.before(index)
            starts[index].record(self.stream)
            self.target()
            ends[index].record(self.stream)
            self.probe.after(index)
            hosts.append((time.perf_counter() - host_start) * 1e3)
            if self.fixed:  # the start event already run: the lead ended before the host finished the launch
                self.sampled, self.overruns = self.sampled + 1, self.overruns + bool(starts[index].query())
            ends[index].synchronize()  # one sample at a time: the lead stays a lead
        torch.cuda.synchronize(self.device)
        clocks = self.probe.read(count)
        self.lead_total_ms += count * self.lead_ms
        samples = [Sample(float(s.elapsed_time(e)), c) for s, e, c in zip(starts, ends, clocks, strict=True)]
        if not self.fixed:
            self.host_times = (self.host_times + hosts)[-self.HOST_WINDOW :]
            self.span_times = (self.span_times + [sample.time_ms for sample in samples])[-self.HOST_WINDOW :]
            spans = self.span_times if len(self.host_times) >= self.MIN_LAUNCHES_PAST_COVER else None
            self.host_ms, lead = lead_for(
                self.host_times, self.LEAD_MARGIN, self.LEAD_SLACK_MS, spans_ms=spans, cover_ms=self.COVER_MS
            )
            self.lead_ms = min(max(lead, self.MIN_LEAD_MS), self.MAX_LEAD_MS)
        return samples


def lead_for(
    host_times_ms: list[float],
    margin: float,
    slack_ms: float,
    *,
    spans_ms: list[float] | None = None,
    cover_ms: float = math.inf,
) -> tuple[float, float]:
    """The host's 90th-percentile launch time, and the lead that covers it: margin x it + slack, up to ``cover_ms``.

    Beyond ``cover_ms`` the lead need only cover what the kernels do not hide: the GPU starves when the host is
    still launching after the lead and the kernels launched so far have run, so a launch of ``h`` over kernels of
    ``g`` (their shortest span) needs ``margin x h - g``. A host-bound Hugging Face decode step (about 7 ms of
    launch for 2 ms of kernels) gets the 7 ms it needs, where a cap of 5 ms let its spans take in the host's
    hiccups (+50 % to +120 % in a gated run on an H100); a 32K prefill, launched in 77 ms while its kernels take
    110 ms, keeps 5 ms. This assumes the launch is spread over the kernels; a single kernel's launch comes all
    before it, and is covered whole as long as it takes under ``cover_ms`` (every kernel case measured so far).
    """
    ordered = sorted(host_times_ms)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    whole = margin * p90 + slack_ms
    if not spans_ms:
        return p90, min(whole, cover_ms)
    return p90, min(whole, max(cover_ms, whole - min(spans_ms)))


def time_cuda(
    workload: Workload, device: torch.device, config: TimingConfig, *, max_clock_mhz: float | None = None
) -> Timing:
    """CUDA-event timing with the per-sample SM clock, an L2 flush before every sample (outside the span)."""
    target: Workload = workload
    if config.cuda_graph:
        target = _capture_graph(workload, device)
    probe = probe_for(device)
    source = CudaSource(target, device, probe, l2_flush_buffer(device) if config.flush_l2 else None)
    timing = timed(
        source,
        config,
        gpu=True,
        timer="cuda-graph-events" if config.cuda_graph else "cuda-events",
        clock_source=probe.source,
        max_clock_mhz=max_clock_mhz,
    )
    note = probe_note(device)
    if note:
        timing.info["clock_note"] = note
    missed = getattr(probe, "missed", 0)
    if missed:
        timing.info["clock_missed"] = missed
        probe.missed = 0  # type: ignore[attr-defined]
    return timing


def _capture_graph(workload: Workload, device: torch.device) -> Workload:
    """Capture one call in a CUDA graph so replays carry no launch overhead (the clock stamps stay outside it)."""
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


# ---------------------------------------------------------------- CPU


class CpuSource:
    """Isolated CPU samples: a monotonic clock around whole (synchronous) calls; no SM clock."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload

    def take(self, count: int) -> list[Sample]:
        samples = []
        for _ in range(count):
            start = time.perf_counter_ns()
            self.workload()
            samples.append(Sample((time.perf_counter_ns() - start) / 1e6, None))
        return samples


def time_cpu(workload: Workload, config: TimingConfig) -> Timing:
    """Monotonic-clock timing of whole calls (CPU work is synchronous)."""
    return timed(CpuSource(workload), config, gpu=False, timer="perf_counter", clock_source=NoClock.source)
