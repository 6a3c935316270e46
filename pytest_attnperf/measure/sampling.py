"""When to stop warming up, which samples to keep, when to stop sampling (torch-free; the timers are elsewhere).

A ``SampleSource`` runs isolated samples and returns each one's time and SM clock. The rules:

- **Warm-up until steady**, with the same loop as sampling (same duty cycle): samples are grouped
  into blocks of >= 2 ms (or 16 samples); the warm-up ends when the median of the last 3 blocks is
  within 1 % of the median of the 3 before them, in time and in clock (a step shows, a clock that
  dithers within its state does not), and, for a kernel of >= 1 ms, 100 ms of GPU time have run
  (the boost -> power-cap step of the heavy kernels comes 50-100 ms into sustained load). A cap
  bounds it; a warm-up that hits the cap is marked not steady, and normalisation carries the weight.
- **Throttled samples are discarded** (clock below 75 % of the GPU's maximum, NVBench's rule);
  each batch holding one is followed by a pause, 0.05 s growing x1.5 from the second in a row up
  to 0.5 s. After more than ``max(3 * count, 30)`` discards or 2 s of pauses the case stops with what it has,
  and says so (never an empty result without a reason).
- **Sampling stops when the median is known**: after the minimum count (on a CPU, ``rep_ms`` of samples at
  the warm-up's estimate: a loaded CPU's times move in bursts), sampling continues in chunks
  until the distribution-free 95 % confidence interval of the median (order statistics) is within
  +-0.3 % of it, or the cap: 3x the sampling time (``rep_ms``) of kernel time (samples x median),
  10x it of measured time (a loaded CPU's preempted samples), or the sample ceiling.
  0.3 % is a tenth of the smallest latency tolerance (3 %) and tighter than the rule it replaced
  (a median standard error of 0.25 %); replayed on the samples of the committed H200 run 3 it keeps a
  third of them (``benchmarks/experiments/stopping_rule_replay.py``, docs/results/cpu/profile-kernel-suite.md).
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

BLOCK_MS, BLOCK_SAMPLES, HALF = 2.0, 16, 3
STEADY_SPREAD_GPU, STEADY_SPREAD_CPU = 0.01, 0.03  # a CPU's timer jitter is larger; it has no power-cap step
MIN_BUSY_MS, LONG_KERNEL_MS = 100.0, 1.0
MAX_WARMUP_CALLS = 400
THROTTLE_FRACTION = 0.75
FIRST_PAUSE_S, PAUSE_GROWTH, MAX_PAUSE_S, MAX_TOTAL_PAUSE_S = 0.05, 1.5, 0.5, 2.0
PRECISION, CONFIDENCE, EXTEND_FACTOR = 0.003, 0.95, 3.0
WALL_FACTOR = 10.0  # sampling also stops after this x rep_ms of measured time, preempted samples included


class Sample(NamedTuple):
    time_ms: float
    clock_mhz: float | None


class SampleSource(Protocol):
    def take(self, count: int) -> list[Sample]:
        """Run ``count`` isolated samples back to back; their times and clocks, in order."""


@dataclass
class WarmUp:
    samples: list[Sample] = field(default_factory=list)
    steady: bool = False
    wall_ms: float = 0.0
    time_spread: float | None = None  # how far the block times moved between the last two windows (relative)
    clock_spread: float | None = None  # the same for the clock

    @property
    def estimate_ms(self) -> float:
        tail = [sample.time_ms for sample in self.samples[-BLOCK_SAMPLES:]]
        return statistics.median(tail) if tail else 0.0


def _block(samples: Sequence[Sample]) -> tuple[float, float | None]:
    busy = sum(sample.time_ms for sample in samples)
    clocks = [sample.clock_mhz for sample in samples]
    clock = (
        sum(s.time_ms * s.clock_mhz for s in samples if s.clock_mhz is not None) / busy
        if busy > 0 and all(c is not None for c in clocks)
        else None
    )
    return statistics.median(sample.time_ms for sample in samples), clock


def _drift(blocks: Sequence[tuple[float, float | None]]) -> tuple[float, float | None]:
    """How far the last HALF blocks moved from the HALF before them (median over median, minus one): a step
    (boost -> power cap) shows; a clock that dithers within its state averages out."""
    before, after = blocks[-2 * HALF : -HALF], blocks[-HALF:]

    def moved(first: list[float], second: list[float]) -> float:
        return abs(statistics.median(second) / statistics.median(first) - 1)

    clocks = [f for _, f in [*before, *after]]
    clock = moved([f for _, f in before if f], [f for _, f in after if f]) if all(clocks) else None
    return moved([t for t, _ in before], [t for t, _ in after]), clock


def warm_up(
    source: SampleSource,
    *,
    cap_ms: float,
    gpu: bool,
    now: Callable[[], float] = time.perf_counter,
) -> WarmUp:
    """Run samples until time and clock have settled (or the cap); at least one sample."""
    result, current, blocks = WarmUp(), [], []
    limit = STEADY_SPREAD_GPU if gpu else STEADY_SPREAD_CPU
    start, chunk, busy, in_block = now(), 1, 0.0, 0.0
    while True:
        new = source.take(chunk)
        result.samples.extend(new)
        for sample in new:
            busy += sample.time_ms
            in_block += sample.time_ms
            current.append(sample)
            if in_block >= BLOCK_MS or len(current) >= BLOCK_SAMPLES:
                blocks.append(_block(current))
                current, in_block = [], 0.0
        # short kernels: take about a millisecond per call of take(), fewer host round trips
        estimate = max(result.estimate_ms, 1e-3)
        chunk = max(1, min(BLOCK_SAMPLES, int(1.0 / estimate)))
        result.wall_ms = (now() - start) * 1e3
        if len(blocks) >= 2 * HALF:
            result.time_spread, result.clock_spread = _drift(blocks)
            settled = result.time_spread <= limit and (result.clock_spread or 0.0) <= limit
            long_enough = busy >= MIN_BUSY_MS or result.estimate_ms < LONG_KERNEL_MS
            if settled and long_enough:
                result.steady = True
                return result
        if result.wall_ms >= cap_ms or len(result.samples) >= MAX_WARMUP_CALLS:
            return result


def sample_count(estimate_ms: float, rep_ms: float, min_samples: int, max_samples: int) -> int:
    """A CPU's first batch: ``rep_ms`` of samples at the warm-up's estimate. A loaded CPU's times move in bursts
    (another job takes the second core), so its median needs a longer stretch than the interval alone asks for."""
    wanted = int(rep_ms / max(estimate_ms, 1e-6))
    return max(min_samples, min(max_samples, wanted))


def median_half_width(values: Sequence[float], confidence: float = CONFIDENCE) -> float:
    """Half the width of the distribution-free confidence interval of the median, relative to it.

    The interval runs from the j-th to the (n+1-j)-th smallest value, j the largest rank with
    P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2: it holds the true median with at least ``confidence``
    for any distribution. Infinite when there are too few values for such an interval.
    """
    count = len(values)
    rank = _interval_rank(count, confidence)
    centre = statistics.median(values) if count else 0.0
    if rank < 1 or centre <= 0:
        return math.inf
    ordered = sorted(values)
    return (ordered[count - rank] - ordered[rank - 1]) / 2 / centre


@functools.lru_cache(maxsize=1024)
def _interval_rank(count: int, confidence: float) -> int:
    """The order statistic j of the median's interval: exact binomial tail sums (integers, no rounding)."""
    tail, limit, rank = 0, (1 - confidence) / 2 * 2**count, 0
    while rank <= count and tail + math.comb(count, rank) <= limit:
        tail += math.comb(count, rank)
        rank += 1
    return rank


@dataclass
class Collected:
    kept: list[Sample] = field(default_factory=list)
    discarded: list[Sample] = field(default_factory=list)
    paused_s: float = 0.0
    exhausted: bool = False  # stopped by the discard limits before the minimum count
    extended: int = 0  # samples taken past the minimum because the median was not yet known well enough
    half_width: float = math.inf  # the median's relative 95 % confidence half-width when sampling stopped


def collect(
    source: SampleSource,
    count: int,
    *,
    threshold_mhz: float | None,
    rep_ms: float,
    max_samples: int,
    precision: float = PRECISION,
    sleep: Callable[[float], None] = time.sleep,
    bounded_from: int | None = None,
) -> Collected:
    """Take at least ``count`` accepted samples (discarding throttled ones, pausing after each), then more
    until the median's confidence half-width is within ``precision`` of it, or the cap.

    ``bounded_from`` (a CPU's minimum count): the first batch too stops at the bound on measured time once it
    holds that many samples. A CPU's first batch is planned from the warm-up's estimate; a host that another job
    takes meanwhile can stretch each of its hundreds of samples a thousandfold (0.06 ms became 40 ms: 8 s).
    """
    result = Collected()
    pause, in_a_row = FIRST_PAUSE_S, 0
    max_discards = max(3 * count, 30)
    budget = EXTEND_FACTOR * rep_ms
    wanted = count
    step = max_samples if bounded_from is None else bounded_from  # samples per take(): all at once, unbounded
    while True:
        while len(result.kept) < wanted:
            bounded = bounded_from is not None and len(result.kept) >= bounded_from
            if bounded and sum(s.time_ms for s in result.kept) >= WALL_FACTOR * rep_ms:
                break
            batch = source.take(min(wanted - len(result.kept), step))
            throttled = [s for s in batch if _throttled(s, threshold_mhz)]
            result.kept.extend(s for s in batch if not _throttled(s, threshold_mhz))
            if not throttled:
                in_a_row, pause = 0, FIRST_PAUSE_S
                continue
            result.discarded.extend(throttled)
            in_a_row += 1
            if in_a_row >= 2:
                pause = min(pause * PAUSE_GROWTH, MAX_PAUSE_S)
            if len(result.discarded) > max_discards or result.paused_s + pause > MAX_TOTAL_PAUSE_S:
                result.exhausted = len(result.kept) < count
                result.extended = max(0, len(result.kept) - count)
                result.half_width = median_half_width([s.time_ms for s in result.kept])
                return result
            sleep(pause)  # let the GPU recover before the next samples (NVBench's throttle recovery)
            result.paused_s += pause
        times = [s.time_ms for s in result.kept]
        result.half_width = median_half_width(times)
        # The budget counts kernel time as the median says it is: one sample stretched by a preempted host
        # (a loaded CPU) must not end the sampling before the median is known.
        kept, median = len(times), statistics.median(times)
        spent = kept * median
        # ... but a host so loaded that the median never settles stops at a bound on the time it really took.
        overrun = sum(times) >= WALL_FACTOR * rep_ms
        if result.half_width <= precision or spent >= budget or overrun or kept >= max_samples:
            result.extended = max(0, kept - count)
            return result
        wanted = min(kept + _next_chunk(kept, result.half_width / precision, budget - spent, median), max_samples)


def _next_chunk(kept: int, excess: float, budget_left_ms: float, median_ms: float) -> int:
    """How many more samples: the interval narrows as 1/sqrt(n), so about n * (excess**2 - 1) more are
    needed; at least a few, at most as many again as kept, and no more than the budget left holds."""
    needed = math.ceil(kept * (min(excess, 10.0) ** 2 - 1)) if math.isfinite(excess) else kept
    affordable = max(1, math.ceil(budget_left_ms / max(median_ms, 1e-6)))
    return max(1, min(max(needed, 5), kept, affordable))


def _throttled(sample: Sample, threshold_mhz: float | None) -> bool:
    return threshold_mhz is not None and sample.clock_mhz is not None and sample.clock_mhz < threshold_mhz


def throttle_threshold(max_clock_mhz: float | None, warmup: Sequence[Sample]) -> float | None:
    """75 % of the GPU's maximum SM clock (NVML), else of the fastest clock seen while warming up."""
    seen = [sample.clock_mhz for sample in warmup if sample.clock_mhz is not None]
    reference = max_clock_mhz or (max(seen) if seen else None)
    return THROTTLE_FRACTION * reference if reference else None
