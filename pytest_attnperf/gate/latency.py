"""One case's latency against its baseline: normalise to the baseline's clock, then decide (torch-free).

The decision ratio is the run's median at the baseline's clock over the baseline's centre. The
normalisation is refused, and the raw ratio decides, when it would excuse what the clock cannot
explain: the run's clock is too far from the baseline's to extrapolate (< 0.8 or > 1.25 of it),
or the GPU drew over 10 % more power than at the baseline (a regression that draws more power
lowers the clock itself; plain drift or a power cap lowers the clock without raising the power).
A clock below 0.9 of the baseline's makes a first measurement that only normalisation passes
ambiguous: it is measured again after a cool-down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .normalise import choose_beta, fit_beta, median_clock, normalised_median
from .statistics import (
    DEFAULT_PARAMS,
    GateParams,
    Tolerance,
    Verdict,
    confirm_verdict,
    final_verdict,
    first_verdict,
    p_unchanged,
    tolerance,
)

if TYPE_CHECKING:
    from .baselines import BaselineEntry
    from .results import CaseResult

EXTRAPOLATION = (0.8, 1.25)  # beyond these clock ratios the power law is not trusted at all
THROTTLED = 0.9  # below this clock ratio a pass that only normalisation gives is re-measured
POWER_RISE = 0.10  # mean power above the baseline's by more than this (NVML's energy counter is coarse)


@dataclass
class LatencyDecision:
    verdict: Verdict
    ratio: float  # the ratio decided on
    raw_ratio: float
    normalised_ratio: float | None
    tolerance: Tolerance
    p_value: float
    stage: int
    notes: list[str] = field(default_factory=list)

    def stage_record(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "ratio": round(self.ratio, 6),
            "raw_ratio": round(self.raw_ratio, 6),
            "normalised_ratio": None if self.normalised_ratio is None else round(self.normalised_ratio, 6),
            "tolerance": round(self.tolerance.tau, 6),
            "verdict": self.verdict.value,
        }


def _power_ratio(result: CaseResult, baseline: BaselineEntry) -> float | None:
    """Mean power while running (energy per call over time per call), over the baseline's; None if unknown.

    Energy per call alone cannot tell: at the power cap an unchanged kernel slowed by a lower clock
    takes more energy per call in proportion to its time (on the H200 this refused normalisation in
    7 of 20 unchanged sdpa-cudnn 16K trials). Power is the sign of a kernel that draws more itself.
    """
    value = (result.gpu or {}).get("energy_mj_per_call")
    if not isinstance(value, (int, float)) or value <= 0 or not baseline.energy_mj or not result.median_ms:
        return None
    assert baseline.median_ms is not None
    return (float(value) / result.median_ms) / (baseline.energy_mj / baseline.median_ms)


def normalise_result(result: CaseResult, baseline: BaselineEntry) -> list[str]:
    """Fill the result's normalised median, beta, clocks; return notes on what was done."""
    times = (result.warmup_ms or []) + (result.samples_ms or [])
    clocks = (result.warmup_clock_mhz or []) + (result.clock_mhz or [])
    samples, sample_clocks = result.samples_ms or [], result.clock_mhz or [None] * len(result.samples_ms or [])
    fit = fit_beta(times, clocks) if len(times) == len(clocks) else None
    half_width = (baseline.beta_ci[1] - baseline.beta_ci[0]) / 2 if baseline.beta_ci else None
    choice = choose_beta(fit, baseline.beta, half_width)
    result.median_clock_mhz = median_clock(sample_clocks)
    result.clock_ref_mhz = baseline.clock_mhz
    result.beta, result.beta_source = choice.beta, choice.source
    notes: list[str] = []
    if not samples:
        return notes
    reference = baseline.clock_mhz
    clock = result.median_clock_mhz
    if clock is None or choice.beta == 0 or reference is None:
        result.normalised_median_ms = result.median_ms
        if clock is not None and reference is not None and choice.beta == 0 and choice.source == "none":
            notes.append("beta unknown (the clock barely moved in this run and its baseline): raw time gated")
        return notes
    ratio = clock / reference
    if not EXTRAPOLATION[0] <= ratio <= EXTRAPOLATION[1]:
        result.normalised_median_ms = result.median_ms
        notes.append(
            f"SM clock {clock:.0f} MHz is {ratio:.2f} of the baseline's {reference:.0f} MHz: too far to normalise, "
            "raw time gated"
        )
        return notes
    result.normalised_median_ms = normalised_median(samples, sample_clocks, reference, choice.beta)
    return notes


def decide_latency(
    result: CaseResult,
    baseline: BaselineEntry,
    requested: float | None,
    stage: int,
    params: GateParams = DEFAULT_PARAMS,
) -> LatencyDecision:
    """Normalise ``result`` to ``baseline`` and decide at ``stage`` (1 first, 2 confirmation, 3 last)."""
    assert result.median_ms is not None
    assert baseline.median_ms is not None
    notes = normalise_result(result, baseline)
    tol = tolerance(baseline.runs, baseline.spread, requested, params)
    raw_ratio = result.median_ms / baseline.median_ms
    normalised = result.normalised_median_ms / baseline.median_ms if result.normalised_median_ms else None
    ratio = normalised if normalised is not None else raw_ratio
    over_raw, under_normalised = raw_ratio > 1 + tol.tau, ratio <= 1 + tol.tau
    power_ratio = _power_ratio(result, baseline)
    if over_raw and under_normalised and power_ratio is not None and power_ratio > 1 + POWER_RISE:
        notes.append(
            f"the GPU drew x{power_ratio:.3f} the baseline's power at a lower clock: the lower clock is this "
            "kernel's own doing, so the raw time is gated"
        )
        ratio = raw_ratio
    if stage == 1:
        verdict = first_verdict(ratio, tol, params)
        clock_ratio = (
            result.median_clock_mhz / baseline.clock_mhz if result.median_clock_mhz and baseline.clock_mhz else None
        )
        if verdict is Verdict.PASS and over_raw and clock_ratio is not None and clock_ratio < THROTTLED:
            verdict = Verdict.AMBIGUOUS
            notes.append(f"the GPU ran at {clock_ratio:.2f} of the baseline's clock: measured again after a cool-down")
    elif stage == 2:
        verdict = confirm_verdict(ratio, tol, params)
    else:
        verdict = final_verdict(ratio, tol)
    if tol.raised:
        notes.append(f"tolerance {tol.describe()}")
    elif tol.capped:
        notes.append(
            f"tolerance {tol.describe()}: this case's between-run spread is too wide for its baseline "
            "to gate tighter; record more runs or set a tolerance"
        )
    return LatencyDecision(verdict, ratio, raw_ratio, normalised, tol, p_unchanged(ratio, tol), stage, notes)
