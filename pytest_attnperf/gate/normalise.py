"""Clock normalisation, torch-free: how much of a case's time follows the SM clock, and its time at a fixed clock.

Model, per case: ``log t = a - beta * log f`` (beta = 1: time proportional to cycles, a
compute-bound kernel; beta = 0: bound by the fixed HBM clock or the host). The normalised time of
a sample is ``t * (f / f_ref) ** beta``: its time at the baseline's clock. beta is kept in [0, 1]
unless its fit says, with confidence, that it is over 1 (its whole 90 % interval above 1: on the
H200 the power-capped cuDNN kernels fitted 1.18, [1.17, 1.22]; their time falls faster than the SM
clock, since the clock's fall at the cap moves other clocks with it): then the fitted value is kept,
up to ``BETA_MAX``. Clamping it to 1 left an unchanged kernel at ``(f / f_ref) ** (1 - beta)``: a
false alarm at a clock 0.85 of the baseline's.

beta is fitted with the Theil-Sen estimator (scipy.stats.theilslopes: a 29 % breakdown point,
so host-gap outliers barely move it) on *blocks* of consecutive samples, each >= 2 ms of event
time or 16 samples, whose clock is the time-weighted mean: a short sample's clock carries the
~1 us globaltimer step as noise, and noise in x biases a regression slope towards 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

BLOCK_MS = 2.0
BLOCK_SAMPLES = 16
MIN_BLOCKS = 8  # fewer blocks give no usable slope
MIN_CLOCK_RANGE = 0.02  # the clock must move by 2 % (5th to 95th percentile) for beta to be identifiable
MAX_HALF_WIDTH = 0.6  # a 90 % interval wider than +-0.6 says nothing
BETA_MAX = 2.0  # beyond this the power law is not a model of the kernel's clock response at all


def bounded_beta(value: float, low: float) -> float:
    """``value`` in [0, 1], or up to BETA_MAX when its interval's low end (``low``) is over 1."""
    ceiling = BETA_MAX if low > 1.0 else 1.0
    return min(max(value, 0.0), ceiling)


@dataclass(frozen=True)
class BetaFit:
    """beta of one set of samples: bounded (see :func:`bounded_beta`), the unclamped slope and its 90 % interval."""

    beta: float
    unclamped: float
    low: float
    high: float
    blocks: int
    clock_range: float  # 5th-95th percentile spread of log f over the blocks

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def identified(self) -> bool:
        return self.blocks >= MIN_BLOCKS and self.clock_range >= MIN_CLOCK_RANGE and self.half_width <= MAX_HALF_WIDTH


def blocks(times_ms: Sequence[float], clocks_mhz: Sequence[float | None]) -> list[tuple[float, float]]:
    """(median time, time-weighted mean clock) of consecutive clocked samples, >= 2 ms or 16 samples each."""
    out: list[tuple[float, float]] = []
    current: list[float] = []
    busy = cycles = 0.0
    for time_ms, clock in zip(times_ms, clocks_mhz, strict=True):
        if clock is None or not time_ms > 0 or not clock > 0:
            continue
        current.append(time_ms)
        busy += time_ms
        cycles += time_ms * clock
        if busy >= BLOCK_MS or len(current) >= BLOCK_SAMPLES:
            out.append((statistics.median(current), cycles / busy))
            current, busy, cycles = [], 0.0, 0.0
    return out


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fit_beta(times_ms: Sequence[float], clocks_mhz: Sequence[float | None]) -> BetaFit | None:
    """Theil-Sen fit of log t on log f over blocks; None with fewer than three blocks or a constant clock."""
    grouped = blocks(times_ms, clocks_mhz)
    if len(grouped) < 3:
        return None
    log_t = [math.log(t) for t, _ in grouped]
    log_f = [math.log(f) for _, f in grouped]
    if max(log_f) - min(log_f) <= 0:
        return None
    from scipy import stats

    fit = stats.theilslopes(log_t, log_f, alpha=0.90)
    unclamped = -float(fit.slope)
    low, high = -float(fit.high_slope), -float(fit.low_slope)
    spread = _quantile(log_f, 0.95) - _quantile(log_f, 0.05)
    return BetaFit(bounded_beta(unclamped, low), unclamped, low, high, len(grouped), spread)


@dataclass(frozen=True)
class BetaChoice:
    """The beta a verdict uses and where it came from ('run', 'baseline', 'run+baseline' or 'none')."""

    beta: float
    source: str


def choose_beta(run: BetaFit | None, baseline_beta: float | None, baseline_half_width: float | None) -> BetaChoice:
    """Inverse-variance mean of this run's fit and the baseline's (each when identified); 0 with neither."""
    estimates: list[tuple[float, float]] = []
    if run is not None and run.identified:
        estimates.append((run.beta, max(run.half_width, 1e-3)))
    if baseline_beta is not None:
        estimates.append((baseline_beta, max(baseline_half_width if baseline_half_width is not None else 0.3, 1e-3)))
    if not estimates:
        return BetaChoice(0.0, "none")
    weights = [1.0 / width**2 for _, width in estimates]
    beta = sum(weight * value for weight, (value, _) in zip(weights, estimates, strict=True)) / sum(weights)
    names = [
        name
        for name, present in (("run", run is not None and run.identified), ("baseline", baseline_beta is not None))
        if present
    ]
    source = "+".join(names)
    return BetaChoice(min(max(beta, 0.0), BETA_MAX), source)  # each estimate is already bounded


def median_clock(clocks_mhz: Sequence[float | None]) -> float | None:
    known = [clock for clock in clocks_mhz if clock is not None and clock > 0]
    return statistics.median(known) if known else None


def normalised_times(
    times_ms: Sequence[float], clocks_mhz: Sequence[float | None], reference_mhz: float | None, beta: float
) -> list[float]:
    """Each sample's time at ``reference_mhz``; a sample without a clock reading uses the run's median clock."""
    own = median_clock(clocks_mhz)
    if own is None or beta == 0:
        return list(times_ms)
    reference = reference_mhz or own
    return [
        t * ((f if f is not None and f > 0 else own) / reference) ** beta
        for t, f in zip(times_ms, clocks_mhz, strict=True)
    ]


def normalised_median(
    times_ms: Sequence[float], clocks_mhz: Sequence[float | None], reference_mhz: float | None, beta: float
) -> float:
    return statistics.median(normalised_times(times_ms, clocks_mhz, reference_mhz, beta))


def robust_relative_se(values: Sequence[float]) -> float:
    """Standard error of the median relative to it (1.2533 x a MAD-based sd / sqrt(n)); inf under 3 values."""
    if len(values) < 3:
        return math.inf
    centre = statistics.median(values)
    mad = statistics.median(abs(value - centre) for value in values)
    return 1.2533 * 1.4826 * mad / math.sqrt(len(values)) / centre if centre > 0 else math.inf
