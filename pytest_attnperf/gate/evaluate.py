"""The verdict of one case: its marks + its measurement + its baseline -> violations and verdict words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..spec.marks import GateMarks
from ..spec.options import MissingPolicy
from .checks import GateContext, Violation, check_equivalence, check_latency, check_memory
from .results import CaseResult

if TYPE_CHECKING:
    from .baselines import BaselineEntry


@dataclass(frozen=True)
class GatePolicy:
    """Run-wide defaults that the marks may override."""

    latency_tolerance: float
    memory_tolerance: float
    missing: MissingPolicy
    updating: bool  # while refreshing baselines, the old ones are reported, not enforced


@dataclass
class GateOutcome:
    violations: list[Violation] = field(default_factory=list)
    skip_reason: str | None = None
    warnings: list[str] = field(default_factory=list)


def _missing(result: CaseResult, what: str, policy: GatePolicy, outcome: GateOutcome) -> None:
    message = (
        f"no {what} baseline for {result.test_id} on {result.device} in {result.baseline_file}; "
        "record one with `attnperf update` (or pytest --attnperf --attnperf-update)"
    )
    result.verdicts[what] = "NO BASELINE"
    if policy.missing == "fail":
        outcome.violations.append(Violation("baseline", message))
    elif policy.missing == "skip":
        outcome.skip_reason = message
    # "warn": the verdict says "no baseline" and the summary counts them; no per-test warning noise.


def evaluate_gate(
    result: CaseResult,
    marks: GateMarks,
    baseline: BaselineEntry | None,
    policy: GatePolicy,
    context: GateContext,
) -> GateOutcome:
    """Check ``result`` against its marks and baseline; fill its verdicts and baseline numbers."""
    outcome = GateOutcome()
    if baseline is not None:
        result.baseline_median_ms = baseline.median_ms
        result.baseline_peak_bytes = baseline.peak_bytes
    if not result.fits:
        if baseline is not None and baseline.fits and not policy.updating:
            outcome.violations.append(
                Violation(
                    "memory",
                    f"{result.test_id} no longer fits in memory ({result.reason}); its baseline ran with a peak "
                    f"of {baseline.peak_bytes} bytes {context.where()}",
                )
            )
            result.verdicts["memory"] = "REGRESSION"
        else:
            outcome.skip_reason = f"does not fit on {result.device}: {result.reason}"
        return outcome

    if marks.equivalence is not None and result.equivalence_passed is not None:
        result.verdicts["equivalence"] = "ok" if result.equivalence_passed else "MISMATCH"

    enforce_baseline = not policy.updating
    if marks.latency is not None and result.median_ms is not None:
        spec = marks.latency
        tolerance = spec.tolerance if spec.tolerance is not None else policy.latency_tolerance
        baseline_ms = baseline.median_ms if (baseline and spec.use_baseline and enforce_baseline) else None
        if spec.use_baseline and enforce_baseline and baseline_ms is None:
            _missing(result, "latency", policy, outcome)
        violation = check_latency(
            result.median_ms,
            spec,
            tolerance=tolerance,
            baseline_ms=baseline_ms,
            context=context,
            samples_ms=result.quantiles_ms or (),
            baseline_quantiles_ms=baseline.quantiles_ms if baseline and baseline_ms is not None else (),
        )
        if violation:
            outcome.violations.append(violation)
        result.verdicts.setdefault("latency", "REGRESSION" if violation else "ok")

    if marks.memory is not None:
        spec_memory = marks.memory
        if result.peak_bytes is None:
            outcome.warnings.append(
                f"{result.test_id}: peak memory not measured ({result.reason}); memory check skipped"
            )
            result.verdicts["memory"] = "not measured"
        else:
            tolerance = spec_memory.tolerance if spec_memory.tolerance is not None else policy.memory_tolerance
            baseline_bytes = (
                baseline.peak_bytes if (baseline and spec_memory.use_baseline and enforce_baseline) else None
            )
            if spec_memory.use_baseline and enforce_baseline and baseline_bytes is None:
                _missing(result, "memory", policy, outcome)
            violation = check_memory(
                result.peak_bytes, spec_memory, tolerance=tolerance, baseline_bytes=baseline_bytes, context=context
            )
            if violation:
                outcome.violations.append(violation)
            result.verdicts.setdefault("memory", "REGRESSION" if violation else "ok")
    return outcome


def equivalence_violation(result: CaseResult, context: GateContext) -> Violation | None:
    """The equivalence verdict needs no baseline, so update mode enforces it too."""
    return check_equivalence(result.mismatch, context)
