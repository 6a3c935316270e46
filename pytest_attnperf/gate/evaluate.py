"""The verdict of one case: its marks + its measurement + its baseline -> violations and verdict words.

Latency is three-valued at a first measurement: pass, regression (far over the line), or
ambiguous, which the session measures again after a cool-down at its end (``stage`` 2, and 3 if
still ambiguous). Memory is deterministic and decided at once; "does not fit" means "does not
fit in a clean state" (the runner retries an out-of-memory after freeing everything it holds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..spec.marks import GateMarks
from ..spec.options import MissingPolicy
from .checks import (
    GateContext,
    Violation,
    baseline_mismatch_message,
    check_budget,
    check_equivalence,
    check_memory,
    latency_violation,
)
from .dispatch import describe_change
from .identity import problem_differences
from .latency import LatencyDecision, decide_latency
from .results import CaseResult
from .statistics import DEFAULT_PARAMS, GateParams, Verdict

if TYPE_CHECKING:
    from .baselines import BaselineEntry

FingerprintPolicy = Literal["off", "warn", "fail"]


@dataclass(frozen=True)
class GatePolicy:
    """Run-wide defaults that the marks may override, and which measurement of the case this is."""

    latency_tolerance: float | None  # None: automatic, from each baseline's spread
    memory_tolerance: float
    missing: MissingPolicy
    updating: bool  # while refreshing baselines, the old ones are reported, not enforced
    fingerprint: FingerprintPolicy = "warn"
    stage: int = 1  # 1: first measurement; 2: the cooled re-measurement at session end; 3: the last
    params: GateParams = DEFAULT_PARAMS


@dataclass
class GateOutcome:
    violations: list[Violation] = field(default_factory=list)
    skip_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    defer: bool = False  # ambiguous first measurement: measure again at the end of the session
    again: bool = False  # ambiguous re-measurement: measure once more, after another cool-down
    decision: LatencyDecision | None = None


def _missing(result: CaseResult, what: str, policy: GatePolicy, outcome: GateOutcome) -> None:
    message = (
        f"no {what} baseline for {result.test_id} on {result.device} in {result.baseline_file}; "
        "record one with `attnperf update` (or pytest --attnperf --attnperf-update)"
    )
    result.verdicts[what] = "NO BASELINE"
    _apply_missing_policy(message, policy, outcome, warn=False)


def _apply_missing_policy(message: str, policy: GatePolicy, outcome: GateOutcome, *, warn: bool) -> None:
    if policy.missing == "fail":
        outcome.violations.append(Violation("baseline", message))
    elif policy.missing == "skip":
        outcome.skip_reason = message
    elif warn:
        outcome.warnings.append(message)
    # "warn" for a missing baseline: the verdict says so and the summary counts them; no per-test noise.


def _problem(result: CaseResult) -> dict[str, object]:
    return {"backend": result.backend, "mode": result.mode, "shape": result.shape}


def evaluate_gate(
    result: CaseResult,
    marks: GateMarks,
    baseline: BaselineEntry | None,
    policy: GatePolicy,
    context: GateContext,
) -> GateOutcome:
    """Check ``result`` against its marks and baseline; fill its verdicts and baseline numbers."""
    outcome = GateOutcome()
    enforce = not policy.updating
    if baseline is not None and enforce:
        differences = problem_differences(baseline.problem(), _problem(result))
        if differences:
            message = baseline_mismatch_message(result.test_id, differences, context.baseline_file)
            for what, mark in (("latency", marks.latency), ("memory", marks.memory)):
                if mark is not None and mark.use_baseline:
                    result.verdicts[what] = "BASELINE MISMATCH"
            result.notes.append(message)
            _apply_missing_policy(message, policy, outcome, warn=True)
            baseline = None  # a baseline of another problem gates nothing
    if baseline is not None:
        result.baseline_median_ms = baseline.median_ms
        result.baseline_peak_bytes = baseline.peak_bytes
        result.detection_limit = baseline.detection_limit
    if not result.fits:
        _does_not_fit(result, baseline, policy, context, outcome)
        return outcome
    newly_fits = baseline is not None and not baseline.fits and enforce
    if newly_fits:
        result.verdicts["memory"] = "newly fits"
        result.notes.append(
            f"{result.test_id} fits now; its baseline did not fit: a recorded change, not a regression. "
            "Record it with `attnperf update`"
        )
        baseline = None
    if marks.equivalence is not None and result.equivalence_passed is not None:
        result.verdicts["equivalence"] = "ok" if result.equivalence_passed else "MISMATCH"
    dispatch_note = _dispatch(result, baseline, policy, context, outcome)
    if marks.latency is not None and result.median_ms is not None:
        _latency(result, marks, baseline, policy, context, outcome, dispatch_note, skip_missing=newly_fits)
    elif marks.latency is not None and result.reason:
        result.verdicts["latency"] = "not gated"
        outcome.warnings.append(f"{result.test_id}: latency not gated: {result.reason}")
    if marks.memory is not None:
        _memory(result, marks, baseline, policy, context, outcome, skip_missing=newly_fits)
    return outcome


def _does_not_fit(
    result: CaseResult, baseline: BaselineEntry | None, policy: GatePolicy, context: GateContext, outcome: GateOutcome
) -> None:
    if baseline is not None and baseline.fits and not policy.updating:
        outcome.violations.append(
            Violation(
                "memory",
                f"{result.test_id} no longer fits in memory, even after freeing everything the plugin holds "
                f"({result.reason}); its baseline ran with a peak of {baseline.peak_bytes} bytes {context.where()}",
            )
        )
        result.verdicts["memory"] = "REGRESSION"
    else:
        outcome.skip_reason = f"does not fit on {result.device}: {result.reason}"


def _dispatch(
    result: CaseResult,
    baseline: BaselineEntry | None,
    policy: GatePolicy,
    context: GateContext,
    outcome: GateOutcome,
) -> str | None:
    if baseline is None or policy.fingerprint == "off" or policy.updating:
        return None
    change = describe_change(baseline.fingerprint, result.fingerprint)
    if change is None:
        return None
    result.notes.append(change)
    if policy.fingerprint == "fail":
        result.verdicts["dispatch"] = "DISPATCH CHANGED"
        outcome.violations.append(
            Violation("dispatch", f"{change} in {context.test_id} (--attnperf-fingerprint=fail) {context.where()}")
        )
    else:
        outcome.warnings.append(f"{context.test_id}: {change}")
    return change


def _latency(
    result: CaseResult,
    marks: GateMarks,
    baseline: BaselineEntry | None,
    policy: GatePolicy,
    context: GateContext,
    outcome: GateOutcome,
    dispatch_note: str | None,
    *,
    skip_missing: bool,
) -> None:
    spec = marks.latency
    assert spec is not None
    assert result.median_ms is not None
    budget = check_budget(result.median_ms, spec, context)
    if budget:
        outcome.violations.append(budget)
    requested = spec.tolerance if spec.tolerance is not None else policy.latency_tolerance
    use_baseline = spec.use_baseline and not policy.updating
    if not use_baseline or baseline is None or baseline.median_ms is None:
        if use_baseline and not skip_missing and "latency" not in result.verdicts:
            _missing(result, "latency", policy, outcome)
        result.verdicts.setdefault("latency", "REGRESSION" if budget else "ok")
        return
    decision = decide_latency(result, baseline, requested, policy.stage, policy.params)
    outcome.decision = decision
    result.tolerance = decision.tolerance.tau
    result.stages.append(decision.stage_record())
    result.notes.extend(decision.notes)
    if spec.tolerance is not None and baseline.detection_limit and spec.tolerance < baseline.detection_limit:
        warning = (
            f"{result.test_id}: the marker asks to catch slowdowns over {spec.tolerance * 100:.1f} %, but "
            f"`attnperf calibrate` measured that this case detects only >= {baseline.detection_limit * 100:.1f} %"
        )
        result.notes.append(warning)
        outcome.warnings.append(warning)
    if decision.verdict is Verdict.REGRESSION:
        extra = [dispatch_note] if dispatch_note else []
        history = [float(str(stage["ratio"])) for stage in result.stages]
        outcome.violations.append(
            latency_violation(
                result.median_ms, baseline.median_ms, decision, history, result.median_clock_mhz, context, extra
            )
        )
        result.verdicts["latency"] = "REGRESSION"
    elif decision.verdict is Verdict.AMBIGUOUS:
        result.verdicts["latency"] = "ambiguous"
        outcome.defer, outcome.again = policy.stage == 1, policy.stage == 2
    else:
        result.verdicts["latency"] = "REGRESSION" if budget else "ok"
        if policy.stage > 1:
            first = result.stages[0]["ratio"] if result.stages else None
            result.notes.append(f"the first measurement (x{first}) was not confirmed after a cool-down")


def _memory(
    result: CaseResult,
    marks: GateMarks,
    baseline: BaselineEntry | None,
    policy: GatePolicy,
    context: GateContext,
    outcome: GateOutcome,
    *,
    skip_missing: bool,
) -> None:
    spec = marks.memory
    assert spec is not None
    if result.peak_bytes is None:
        outcome.warnings.append(f"{result.test_id}: peak memory not measured ({result.reason}); memory check skipped")
        result.verdicts.setdefault("memory", "not measured")
        return
    tolerance = spec.tolerance if spec.tolerance is not None else policy.memory_tolerance
    use_baseline = spec.use_baseline and not policy.updating
    baseline_bytes = baseline.peak_bytes if (baseline is not None and use_baseline) else None
    if use_baseline and baseline_bytes is None and not skip_missing and "memory" not in result.verdicts:
        _missing(result, "memory", policy, outcome)
    violation = check_memory(
        result.peak_bytes, spec, tolerance=tolerance, baseline_bytes=baseline_bytes, context=context
    )
    if violation:
        outcome.violations.append(violation)
    result.verdicts.setdefault("memory", "REGRESSION" if violation else "ok")


def equivalence_violation(result: CaseResult, context: GateContext) -> Violation | None:
    """The equivalence verdict needs no baseline, so update mode enforces it too."""
    return check_equivalence(result.mismatch, context)
