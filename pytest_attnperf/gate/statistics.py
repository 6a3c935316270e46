"""The latency decision, torch-free: how far a case may move, and what one measurement means.

Verdicts are decided by *between-run* noise (session, power state, GPU unit), not by the tiny
within-run noise: a baseline of N independent runs stores its normalised run medians, and
their log standard deviation ``spread`` is the case's noise. The tolerance is a one-sided
Student-t prediction bound for one new run against the centre of N runs, with the N-run
spread shrunk towards a suite-wide prior (a 2-degree-of-freedom sd alone is useless: 5 % of
the time it is below a quarter of the truth). scipy.stats gives the t quantiles.

A first measurement is three-valued (PASS, AMBIGUOUS, REGRESSION); an ambiguous one is measured
again after a cool-down at the end of the session, and only a confirmed excess fails.
``docs/measurement.md`` derives every number here; ``benchmarks/experiments/gate_simulation.py`` checks them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any


class Verdict(str, enum.Enum):
    PASS = "pass"
    AMBIGUOUS = "ambiguous"  # measure again, after a cool-down, at the end of the session
    REGRESSION = "regression"


@dataclass(frozen=True)
class GateParams:
    """The decision rule's constants (justified in docs/measurement.md, "The decision rule")."""

    floor: float = 0.03  # auto tolerance never below this: unit-to-unit and day-to-day effects a baseline cannot see
    cap: float = 0.10  # what a baseline's own spread may raise the auto tolerance to (on another unit the fleet adds)
    prior_sd: float = 0.0075  # suite-wide between-run log-sd the case's own spread is shrunk towards
    prior_df: float = 4.0  # weight of that prior, in degrees of freedom
    sd_floor: float = 0.004  # the spread is never assumed below this
    # Gated on another unit than the baseline's: the unit-to-unit spread of a case's median at the same clock, which
    # a baseline's runs (all on one unit) cannot hold. Two pairs of H100 units, December 2026: log-RMS 1.2 % over
    # the kernel suite's 119 cases and over the live validation's 8 (docs/measurement.md, "Units of one model").
    fleet_sd: float = 0.012
    # ... and a constant part, in ms, that a short step feels most: the kernel suite on three more units against the
    # recording one (December 2026), steps under 40 us differed by a log-RMS of 2.9 %, by up to 2.5-3 us on
    # 20-50 us steps; a fit of sd^2 = 1.2 %^2 + (c / median)^2 gives c = 0.95 us, rounded to 1 us
    # (docs/measurement.md, "Units of one model"; benchmarks/experiments/fleet_spread.py).
    fleet_abs_ms: float = 0.001
    alpha: float = 0.01  # one-sided false-alarm level per stage
    ambiguous_width: float = 1.0  # a confirmation this many predictive sds under the line passes outright
    clear_margin: float = 3.0  # a first measurement this many predictive sds over the line fails at once


DEFAULT_PARAMS = GateParams()


@dataclass(frozen=True)
class Tolerance:
    """The threshold one case is gated at, and where it came from."""

    tau: float  # a normalised ratio over 1 + tau is over the line
    noise_bound: float  # the lowest tau this case's noise holds at level alpha (before floor and cap)
    predictive_sd: float  # sd of log(new run / baseline centre)
    df: float  # degrees of freedom of the t prediction
    requested: float | None  # the marker's or option's tolerance; None: automatic
    raised: bool  # requested below the noise bound: gated at the bound instead
    capped: bool  # the noise bound is over the cap: gated at the cap anyway (false alarms possible)
    fleet: bool = False  # gated on another unit than the baseline's: the unit-to-unit spread is in predictive_sd

    @property
    def line(self) -> float:
        """log(1 + tau): the threshold in log-ratio units."""
        return math.log1p(self.tau)

    def describe(self) -> str:
        """How the threshold was chosen, for messages: 'auto 3.0 %' or 'raised from 2.0 % to 3.4 %'."""
        if self.raised:
            where = " on another unit than the baseline's (the fleet's unit-to-unit spread in it)" if self.fleet else ""
            return (
                f"raised from the requested {(self.requested or 0) * 100:.1f} % to this case's noise bound "
                f"{self.tau * 100:.1f} %{where}"
            )
        if self.capped:
            return f"{self.tau * 100:.1f} % (capped: this case's noise would need {self.noise_bound * 100:.1f} %)"
        if self.requested is None and self.fleet:
            return f"{self.tau * 100:.1f} % (auto, from the baseline's spread and the unit-to-unit spread of a fleet)"
        if self.requested is None:
            return f"{self.tau * 100:.1f} % (auto, from the baseline's spread)"
        return f"{self.tau * 100:.1f} %"


def _t() -> Any:
    from scipy import stats  # imported when a verdict is due, not when the plugin loads

    return stats.t


def shrunk_sd(runs: int, spread: float | None, params: GateParams = DEFAULT_PARAMS) -> tuple[float, float]:
    """(sd, degrees of freedom): the case's spread pooled with the prior, never below the sd floor."""
    if runs < 1:
        raise ValueError(f"a baseline needs at least one run, not {runs}")
    own_df = runs - 1 if spread is not None else 0
    df = params.prior_df + own_df
    variance = (params.prior_df * params.prior_sd**2 + own_df * (spread or 0.0) ** 2) / df
    return max(math.sqrt(variance), params.sd_floor), df


def fleet_variance(median_ms: float | None, params: GateParams = DEFAULT_PARAMS) -> float:
    """The unit-to-unit variance of log(median) for a step of ``median_ms``: a relative part and a constant one."""
    constant = (params.fleet_abs_ms / median_ms) ** 2 if median_ms else 0.0
    return params.fleet_sd**2 + constant


def tolerance(
    runs: int,
    spread: float | None,
    requested: float | None = None,
    params: GateParams = DEFAULT_PARAMS,
    *,
    fleet: bool = False,
    median_ms: float | None = None,
) -> Tolerance:
    """The threshold of one case: automatic (from its spread, within floor and cap) or requested. ``fleet``: gated
    on another unit than the baseline's, so a new run also differs by the unit-to-unit spread (``fleet_variance`` of
    the baseline's ``median_ms``). The cap bounds what the baseline's own spread may add, not the fleet's part, which
    joins it as the variances join: a 20 us step differs between units by more than 10 %, and no baseline recorded
    on one unit can gate it tighter on another."""
    sd, df = shrunk_sd(runs, spread, params)
    unit_variance = fleet_variance(median_ms, params) if fleet else 0.0
    predictive = math.sqrt(sd**2 * (1.0 + 1.0 / runs) + unit_variance)
    quantile = float(_t().ppf(1.0 - params.alpha, df))
    noise_bound = math.expm1(quantile * predictive)
    cap = params.cap
    if unit_variance:  # joined like the sds
        cap = math.expm1(math.hypot(math.log1p(params.cap), quantile * math.sqrt(unit_variance)))
    if requested is None:
        tau = min(max(noise_bound, params.floor), cap)
        capped = noise_bound > cap
        return Tolerance(tau, noise_bound, predictive, df, None, raised=False, capped=capped, fleet=fleet)
    ceiling = max(requested, cap)
    tau = min(max(requested, noise_bound), ceiling)
    raised, capped = tau > requested, noise_bound > ceiling
    return Tolerance(tau, noise_bound, predictive, df, requested, raised=raised, capped=capped, fleet=fleet)


def first_verdict(ratio: float, tol: Tolerance, params: GateParams = DEFAULT_PARAMS) -> Verdict:
    """The first measurement: under the line passes; far over it fails at once; just over it is ambiguous."""
    if ratio <= 1.0 + tol.tau:
        return Verdict.PASS
    if ratio > (1.0 + tol.tau) * math.exp(params.clear_margin * tol.predictive_sd):
        return Verdict.REGRESSION
    return Verdict.AMBIGUOUS


def confirm_verdict(ratio: float, tol: Tolerance, params: GateParams = DEFAULT_PARAMS) -> Verdict:
    """The cooled-down re-measurement: over the line confirms; well under it clears; in between, once more."""
    if ratio > 1.0 + tol.tau:
        return Verdict.REGRESSION
    if ratio <= (1.0 + tol.tau) * math.exp(-params.ambiguous_width * tol.predictive_sd):
        return Verdict.PASS
    return Verdict.AMBIGUOUS


def final_verdict(ratio: float, tol: Tolerance) -> Verdict:
    """The last re-measurement of a case still ambiguous: the line alone decides."""
    return Verdict.REGRESSION if ratio > 1.0 + tol.tau else Verdict.PASS


def p_unchanged(ratio: float, tol: Tolerance) -> float:
    """One-sided p that an unchanged kernel measures this slow (the t prediction distribution)."""
    return float(_t().sf(math.log(ratio) / tol.predictive_sd, tol.df))


def predicted_detection_limit(tol: Tolerance, power: float = 0.95) -> float:
    """The slowdown caught with probability ``power`` when it must be over the line in two measurements."""
    per_stage = math.sqrt(power)
    quantile = float(_t().ppf(per_stage, tol.df))
    return math.expm1(tol.line + quantile * tol.predictive_sd)


def log_spread(medians: list[float]) -> float | None:
    """Sample sd (ddof 1) of the log medians of independent runs; None for fewer than two."""
    if len(medians) < 2:
        return None
    logs = [math.log(value) for value in medians]
    mean = sum(logs) / len(logs)
    return math.sqrt(sum((value - mean) ** 2 for value in logs) / (len(logs) - 1))


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(value) for value in values) / len(values))
