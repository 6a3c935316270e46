"""One case's latency against its baseline: normalise by what the machine explains, then decide (torch-free).

The raw ratio is the run's median over the baseline's centre. What may be normalised away is the
machine's part of the change (:mod:`.machine`): a reference workload measured next to the case,
now and when the baseline was recorded, says how far the machine's clock moved and how much
slower the unit is at its clock (``residual``, used only on another unit than the baseline's).
Each sample is normalised to the baseline's clock
with the case's beta, but its clock is floored at the clock the machine explains, never more than
``MACHINE_BAND`` under the baseline's: a kernel whose own clock fell further (a kernel that draws
more energy per cycle, at the power cap) is judged on that extra drop. The normalised ratio is then
divided by the residual. On another unit the tolerance also holds the fleet's unit-to-unit spread
(:func:`.statistics.tolerance`), which no reference sees. Normalisation is refused,
and the raw ratio decides, when the clock is too far from the baseline's to extrapolate (< 0.8 or
> 1.25 of it) or the machine is not comparable at all. A baseline (or a run) without a machine
reference falls back to the case's own clock, the old rule, and the verdict says so.
A clock below 0.9 of the baseline's makes a first measurement that only normalisation passes
ambiguous: it is measured again after a cool-down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .machine import MachineShift, machine_shift, other_unit, reference_of, unit_note
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
    from .results import CaseRecord

EXTRAPOLATION = (0.8, 1.25)  # beyond these clock ratios the power law is not trusted at all
THROTTLED = 0.9  # below this clock ratio a pass that only normalisation gives is re-measured
OWN_DROP_NOTE = 0.01  # the case's clock this far under the machine's is said in the verdict
# The most the machine is credited with lowering a case's clock. Live on an H100 (nine interleaved trials, December
# 2026), the reference's clock read x0.74 to x0.99 of its baseline's within one session while every unchanged kernel at
# the cap stayed within x0.969 of its own (x0.947 on the fifth unit against the first's baselines): a reading that
# low excused whole power-heavier regressions (sdpa-cudnn +9 to +14 % in wall time passed in 4 of 9 trials).
MACHINE_BAND = 0.03


@dataclass(frozen=True)
class Normalisation:
    """The case's median brought to its baseline's clock, and the numbers that did it (the record shows them)."""

    normalised_median_ms: float | None = None
    median_clock_mhz: float | None = None
    clock_ref_mhz: float | None = None
    beta: float | None = None
    beta_source: str | None = None
    notes: tuple[str, ...] = ()
    basis: str = "raw"  # what normalised it: raw (nothing), machine or own-clock
    other_unit: bool = False  # measured on a GPU the baseline was not recorded on (its tolerance holds the fleet's)


@dataclass(frozen=True)
class LatencyDecision:
    verdict: Verdict
    ratio: float  # the ratio decided on
    raw_ratio: float
    normalised_ratio: float | None
    tolerance: Tolerance
    p_value: float
    stage: int
    notes: tuple[str, ...] = ()
    decided_by: str = "raw"  # raw, machine (normalised by what the machine explains) or own-clock (the old rule)
    machine_factor: float | None = None  # raw ratio over the normalised one: what normalisation excused
    normalisation: Normalisation = field(default_factory=Normalisation)

    def stage_record(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "ratio": round(self.ratio, 6),
            "raw_ratio": round(self.raw_ratio, 6),
            "normalised_ratio": None if self.normalised_ratio is None else round(self.normalised_ratio, 6),
            "tolerance": round(self.tolerance.tau, 6),
            "verdict": self.verdict.value,
            "decided_by": self.decided_by,
            "machine_factor": None if self.machine_factor is None else round(self.machine_factor, 6),
        }

    def explanation(self) -> str:
        """Which number decided and what the machine explained, for the verdict message."""
        if self.normalised_ratio is None or self.normalised_ratio == self.raw_ratio:
            return ""  # nothing was normalised: the one ratio shown decided
        if self.decided_by == "raw":
            return f"decided on the raw ratio x{self.raw_ratio:.3f}"
        basis = "what the machine explains" if self.decided_by == "machine" else "the case's own clock (old rule)"
        factor = self.machine_factor or 1.0
        return (
            f"decided on the normalised ratio x{self.normalised_ratio:.3f} (raw x{self.raw_ratio:.3f}; "
            f"normalised by {basis}: x{factor:.3f} excused)"
        )


def baseline_beta(baseline: BaselineEntry) -> float | None:
    """The baseline's beta; an old entry clamped to 1 below its own interval uses the interval's middle."""
    if baseline.beta is not None and baseline.beta_ci is not None and baseline.beta_ci[0] > 1 > baseline.beta - 1e-9:
        from .normalise import bounded_beta

        low, high = baseline.beta_ci
        return bounded_beta((low + high) / 2, low)
    return baseline.beta


def run_unit(result: CaseRecord) -> str | None:
    """The UUID of the GPU that measured, where known."""
    uuid = (result.provenance.device_info or {}).get("uuid")
    return str(uuid) if uuid else None


def reference_placements(result: CaseRecord, baseline: BaselineEntry) -> tuple[str, str]:
    """How this case's machine reference was read in the run and in the baseline's runs (periodic or adjacent:
    --attnperf-machine-reference; a record or baseline from before the setting read it periodically)."""
    run = (result.measurement.gpu or {}).get("reference_placement") or "periodic"
    recorded = (baseline.timing or {}).get("machine_reference") or "periodic"
    return str(run), str(recorded)


def run_shift(result: CaseRecord, baseline: BaselineEntry) -> MachineShift | None:
    """The machine's shift between the baseline's reference and the one measured next to this run."""
    measured_reference = reference_of((result.measurement.gpu or {}).get("reference"))
    return machine_shift(measured_reference, reference_of(baseline.reference))


def normalise_result(result: CaseRecord, baseline: BaselineEntry) -> Normalisation:
    """The result's median at the baseline's clock, its beta and clocks, and what normalised it (see decided_by)."""
    measured = result.measurement
    times = (measured.warmup_ms or []) + (measured.samples_ms or [])
    clocks = (measured.warmup_clock_mhz or []) + (measured.clock_mhz or [])
    samples, sample_clocks = measured.samples_ms or [], measured.clock_mhz or [None] * len(measured.samples_ms or [])
    fit = fit_beta(times, clocks) if len(times) == len(clocks) else None
    stored_beta = baseline_beta(baseline)
    half_width = (baseline.beta_ci[1] - baseline.beta_ci[0]) / 2 if baseline.beta_ci else None
    choice = choose_beta(fit, stored_beta, half_width)
    clock = median_clock(sample_clocks)
    reference = baseline.clock_mhz
    notes: list[str] = []
    shift = run_shift(result, baseline)
    unit, recorded_on = run_unit(result), tuple(baseline.gpu_uuids)
    another = other_unit(unit, recorded_on)

    def normalised(median_ms: float | None, basis: str) -> Normalisation:
        return Normalisation(median_ms, clock, reference, choice.beta, choice.source, tuple(notes), basis, another)

    note = unit_note(unit, recorded_on, shift)
    if note:
        notes.append(note)
    run_placement, baseline_placement = reference_placements(result, baseline)
    if shift is not None and run_placement != baseline_placement:
        notes.append(
            f"this case's machine reference was read {run_placement} in this run and {baseline_placement} in its "
            "baseline's: the two readings may be of different states (record and gate with one "
            "--attnperf-machine-reference)"
        )
    if not samples:
        return normalised(None, "raw")
    if shift is not None and not shift.trusted(another):
        notes.append(f"{shift.describe()}: too far to compare the machines, raw time gated")
        return normalised(measured.median_ms, "raw")
    residual = shift.residual if shift is not None and another else 1.0
    if clock is None or choice.beta == 0 or reference is None:
        assert measured.median_ms is not None
        if clock is not None and reference is not None and choice.beta == 0 and choice.source == "none":
            notes.append("beta unknown (the clock barely moved in this run and its baseline): no clock normalisation")
        return normalised(measured.median_ms / residual, "machine" if shift is not None and residual != 1.0 else "raw")
    ratio = clock / reference
    if not EXTRAPOLATION[0] <= ratio <= EXTRAPOLATION[1]:
        notes.append(
            f"SM clock {clock:.0f} MHz is {ratio:.2f} of the baseline's {reference:.0f} MHz: too far to normalise, "
            "raw time gated"
        )
        return normalised(measured.median_ms, "raw")
    if shift is None or shift.clock_ratio is None:
        notes.append(
            "no machine reference in this baseline or run: normalised by the case's own clock (the old rule, which "
            "a kernel that lowers its own clock at the power cap passes); re-record the baseline to judge by the machine"
        )
        return normalised(normalised_median(samples, sample_clocks, reference, choice.beta) / residual, "own-clock")
    # The clock the machine explains, never above the baseline's: a machine with more headroom than then (a cool
    # card at a CI job's start) is no reason for a kernel at the power cap to clock higher, so only a slower
    # machine excuses anything. (Replayed on three unchanged H100 record runs, a floor at the machine's higher
    # clock failed a dozen capped kernels of the first, cooler run: docs/measurement.md.)
    # Nor below MACHINE_BAND under it: the reference's clock moves far more than a capped kernel's (see there).
    credited = max(min(shift.clock_ratio, 1.0), 1 - MACHINE_BAND)
    if shift.clock_ratio < credited:
        notes.append(
            f"the machine's reference ran at x{shift.clock_ratio:.3f} of its clock then; the machine is credited with "
            f"at most a {MACHINE_BAND * 100:.0f} % lower clock (x{credited:.3f}), as far as unchanged kernels at the cap moved"
        )
    floor = credited * reference
    floored = [max(f, floor) if f is not None and f > 0 else floor for f in sample_clocks]
    if ratio < credited * (1 - OWN_DROP_NOTE):
        notes.append(
            f"the case's clock fell to x{ratio:.3f} of its baseline's, the machine's only to x{credited:.3f}: "
            "the extra drop is the kernel's own and is not normalised away"
        )
    return normalised(normalised_median(samples, floored, reference, choice.beta) / residual, "machine")


def decide_latency(
    result: CaseRecord,
    baseline: BaselineEntry,
    requested: float | None,
    stage: int,
    params: GateParams = DEFAULT_PARAMS,
) -> LatencyDecision:
    """Normalise ``result`` to ``baseline`` and decide at ``stage`` (1 first, 2 confirmation, 3 last); reads only."""
    assert result.measurement.median_ms is not None
    assert baseline.median_ms is not None
    normalisation = normalise_result(result, baseline)
    notes, basis = list(normalisation.notes), normalisation.basis
    fleet = normalisation.other_unit
    tol = tolerance(baseline.runs, baseline.spread, requested, params, fleet=fleet, median_ms=baseline.median_ms)
    raw_ratio = result.measurement.median_ms / baseline.median_ms
    median_at_clock = normalisation.normalised_median_ms
    normalised = median_at_clock / baseline.median_ms if median_at_clock else None
    ratio = normalised if normalised is not None else raw_ratio
    over_raw = raw_ratio > 1 + tol.tau
    power_note = _power_note(result, baseline)
    if power_note:
        notes.append(power_note)
    if stage == 1:
        verdict = first_verdict(ratio, tol, params)
        run_clock = normalisation.median_clock_mhz
        clock_ratio = run_clock / baseline.clock_mhz if run_clock and baseline.clock_mhz else None
        if verdict is Verdict.PASS and over_raw and clock_ratio is not None and clock_ratio < THROTTLED:
            verdict = Verdict.AMBIGUOUS
            notes.append(f"the GPU ran at {clock_ratio:.2f} of the baseline's clock: measured again after a cool-down")
    elif stage == 2:
        verdict = confirm_verdict(ratio, tol, params)
    else:
        verdict = final_verdict(ratio, tol)
    if tol.raised:
        notes.append(f"tolerance {tol.describe()}")
    elif fleet and requested is None:
        constant = params.fleet_abs_ms / baseline.median_ms
        short = (
            f" (units also differ by about {params.fleet_abs_ms * 1e3:.1f} us a step, "
            f"{constant * 100:.1f} % of this one)"
            if constant > params.fleet_sd
            else ""
        )
        notes.append(
            f"tolerance {tol.describe()}: on another unit than the baseline's{short}; a baseline recorded on this unit "
            f"gates it at {tolerance(baseline.runs, baseline.spread, None, params).tau * 100:.1f} %"
        )
    elif tol.capped:
        notes.append(
            f"tolerance {tol.describe()}: this case's between-run spread is too wide for its baseline "
            "to gate tighter; record more runs or set a tolerance"
        )
    decided_by = basis if normalised is not None and normalised != raw_ratio else "raw"
    factor = raw_ratio / ratio if decided_by != "raw" else None
    return LatencyDecision(
        verdict,
        ratio,
        raw_ratio,
        normalised,
        tol,
        p_unchanged(ratio, tol),
        stage,
        tuple(notes),
        decided_by,
        factor,
        normalisation,
    )


def _power_note(result: CaseRecord, baseline: BaselineEntry) -> str | None:
    """Mean power over back-to-back calls against the baseline's: said, never decisive (the clock rule decides)."""
    power = (result.measurement.gpu or {}).get("burst_power_w")
    if not isinstance(power, (int, float)) or power <= 0 or not baseline.power_w:
        return None
    spread = f", between-run spread {baseline.power_spread * 100:.1f} %" if baseline.power_spread else ""
    return f"mean power while running {power:.0f} W, x{power / baseline.power_w:.3f} the baseline's{spread}"
