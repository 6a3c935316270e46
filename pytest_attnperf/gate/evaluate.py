"""The verdict of one case: its marks + its measurement + its baseline -> a frozen Decision, writing into nothing.

Latency is three-valued at a first measurement: pass, regression (far over the line), or
ambiguous, which the session measures again after a cool-down at its end (``stage`` 2, and 3 if
still ambiguous). Memory is deterministic and decided at once; "does not fit" means "does not
fit in a clean state" (the runner retries an out-of-memory after freeing everything it holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
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
from .results import CaseRecord
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


@dataclass(frozen=True)
class Decision:
    """The gate's answer for one case; asking again with the same inputs gives an equal one."""

    verdicts: tuple[tuple[str, str], ...] = ()  # (check, word), in the order decided
    violations: tuple[Violation, ...] = ()  # an output mismatch first, then the checks'
    skip_reason: str | None = None
    warnings: tuple[str, ...] = ()
    defer: bool = False  # ambiguous first measurement: measure again at the end of the session
    again: bool = False  # ambiguous re-measurement: measure once more, after another cool-down
    latency: LatencyDecision | None = None
    baseline_median_ms: float | None = None  # the baseline numbers it compared with (none for another problem)
    baseline_peak_bytes: int | None = None
    detection_limit: float | None = None
    baseline_file: str | None = None
    notes: tuple[str, ...] = ()

    def verdict_of(self, check: str) -> str | None:
        return dict(self.verdicts).get(check)

    def record(self, result: CaseRecord, *, outcome: str | None = None, notes: Sequence[str] = ()) -> CaseRecord:
        """A new record: ``result`` with this decision's verdicts, baseline numbers, stage and notes (and outcome)."""
        latency = self.latency
        earlier = result.decision
        decided = replace(
            earlier,
            verdicts={**earlier.verdicts, **dict(self.verdicts)},
            notes=[*earlier.notes, *self.notes, *notes],
            stages=[*earlier.stages, *([latency.stage_record()] if latency is not None else [])],
            baseline_file=self.baseline_file,
            baseline_median_ms=self.baseline_median_ms,
            baseline_peak_bytes=self.baseline_peak_bytes,
            detection_limit=self.detection_limit,
            outcome=earlier.outcome if outcome is None else outcome,
        )
        if latency is not None:
            normalisation = latency.normalisation
            decided = replace(
                decided,
                tolerance=latency.tolerance.tau,
                normalised_median_ms=normalisation.normalised_median_ms,
                median_clock_mhz=normalisation.median_clock_mhz,
                clock_ref_mhz=normalisation.clock_ref_mhz,
                beta=normalisation.beta,
                beta_source=normalisation.beta_source,
            )
        return replace(result, decision=decided)


class _Answer:
    """What one decision collects while it reads the case; frozen into a :class:`Decision` at the end."""

    def __init__(self, result: CaseRecord) -> None:
        self.verdicts: dict[str, str] = {}
        self.violations: list[Violation] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []
        self.skip_reason: str | None = None
        self.defer = self.again = False
        self.latency: LatencyDecision | None = None
        self.history = [float(str(stage["ratio"])) for stage in result.decision.stages]  # earlier measurements' ratios

    def freeze(self, baseline: BaselineEntry | None, context: GateContext) -> Decision:
        return Decision(
            verdicts=tuple(self.verdicts.items()),
            violations=tuple(self.violations),
            skip_reason=self.skip_reason,
            warnings=tuple(self.warnings),
            defer=self.defer,
            again=self.again,
            latency=self.latency,
            baseline_median_ms=baseline.median_ms if baseline is not None else None,
            baseline_peak_bytes=baseline.peak_bytes if baseline is not None else None,
            detection_limit=baseline.detection_limit if baseline is not None else None,
            baseline_file=context.baseline_file,
            notes=tuple(self.notes),
        )


def _missing(result: CaseRecord, what: str, policy: GatePolicy, answer: _Answer) -> None:
    message = (
        f"no {what} baseline for {result.identity.test_id} on {result.identity.device} in {result.decision.baseline_file}; "
        "record one with `attnperf update` (or pytest --attnperf --attnperf-update)"
    )
    answer.verdicts[what] = "NO BASELINE"
    _apply_missing_policy(message, policy, answer, warn=False)


def _apply_missing_policy(message: str, policy: GatePolicy, answer: _Answer, *, warn: bool) -> None:
    if policy.missing == "fail":
        answer.violations.append(Violation("baseline", message))
    elif policy.missing == "skip":
        answer.skip_reason = message
    elif warn:
        answer.warnings.append(message)
    # "warn" for a missing baseline: the verdict says so and the summary counts them; no per-test noise.


def _problem(result: CaseRecord) -> dict[str, object]:
    return {"backend": result.identity.backend, "mode": result.identity.mode, "shape": result.identity.shape}


def decide(
    result: CaseRecord,
    marks: GateMarks,
    baseline: BaselineEntry | None,
    policy: GatePolicy,
    context: GateContext,
) -> Decision:
    """Check ``result`` against its marks and baseline; reads its inputs, writes into nothing."""
    # the messages name the file the gate read
    result = replace(result, decision=replace(result.decision, baseline_file=context.baseline_file))
    answer = _Answer(result)
    mismatch = check_equivalence(
        result.measurement.mismatch, context
    )  # needs no baseline, so update mode enforces it too
    if mismatch is not None:
        answer.violations.append(mismatch)
    baseline = _same_problem(result, marks, baseline, policy, context, answer)
    compared = baseline
    if not result.measurement.fits:
        _does_not_fit(result, baseline, policy, context, answer)
        return answer.freeze(compared, context)
    newly_fits = baseline is not None and not baseline.fits and enforce_baselines(policy)
    if newly_fits:
        answer.verdicts["memory"] = "newly fits"
        answer.notes.append(
            f"{result.identity.test_id} fits now; its baseline did not fit: a recorded change, not a regression. "
            "Record it with `attnperf update`"
        )
        baseline = None
    if marks.equivalence is not None and result.measurement.equivalence_passed is not None:
        answer.verdicts["equivalence"] = "ok" if result.measurement.equivalence_passed else "MISMATCH"
    dispatch_note = _dispatch(result, baseline, policy, context, answer)
    if marks.latency is not None and result.measurement.median_ms is not None:
        _latency(result, marks, baseline, policy, context, answer, dispatch_note, skip_missing=newly_fits)
    elif marks.latency is not None and result.measurement.reason:
        answer.verdicts["latency"] = "not gated"
        answer.warnings.append(f"{result.identity.test_id}: latency not gated: {result.measurement.reason}")
    if marks.memory is not None:
        _memory(result, marks, baseline, policy, context, answer, skip_missing=newly_fits)
    return answer.freeze(compared, context)


def enforce_baselines(policy: GatePolicy) -> bool:
    """While refreshing baselines the old ones are reported, not enforced."""
    return not policy.updating


def _same_problem(
    result: CaseRecord,
    marks: GateMarks,
    baseline: BaselineEntry | None,
    policy: GatePolicy,
    context: GateContext,
    answer: _Answer,
) -> BaselineEntry | None:
    """The baseline, unless it was recorded for another problem: that one gates nothing (and is said)."""
    if baseline is None or not enforce_baselines(policy):
        return baseline
    differences = problem_differences(baseline.problem(), _problem(result))
    if not differences:
        return baseline
    message = baseline_mismatch_message(result.identity.test_id, differences, context.baseline_file)
    for what, mark in (("latency", marks.latency), ("memory", marks.memory)):
        if mark is not None and mark.use_baseline:
            answer.verdicts[what] = "BASELINE MISMATCH"
    answer.notes.append(message)
    _apply_missing_policy(message, policy, answer, warn=True)
    return None


def _does_not_fit(
    result: CaseRecord, baseline: BaselineEntry | None, policy: GatePolicy, context: GateContext, answer: _Answer
) -> None:
    if baseline is not None and baseline.fits and not policy.updating:
        answer.violations.append(
            Violation(
                "memory",
                f"{result.identity.test_id} no longer fits in memory, even after freeing everything the plugin holds "
                f"({result.measurement.reason}); its baseline ran with a peak of {baseline.peak_bytes} bytes {context.where()}",
            )
        )
        answer.verdicts["memory"] = "REGRESSION"
    else:
        answer.skip_reason = f"does not fit on {result.identity.device}: {result.measurement.reason}"


def _dispatch(
    result: CaseRecord,
    baseline: BaselineEntry | None,
    policy: GatePolicy,
    context: GateContext,
    answer: _Answer,
) -> str | None:
    if baseline is None or policy.fingerprint == "off" or policy.updating:
        return None
    change = describe_change(baseline.fingerprint, result.measurement.fingerprint)
    if change is None:
        return None
    answer.notes.append(change)
    if policy.fingerprint == "fail":
        answer.verdicts["dispatch"] = "DISPATCH CHANGED"
        answer.violations.append(
            Violation("dispatch", f"{change} in {context.test_id} (--attnperf-fingerprint=fail) {context.where()}")
        )
    else:
        answer.warnings.append(f"{context.test_id}: {change}")
    return change


def _faster(decision: LatencyDecision) -> str | None:
    """A pass by more than the tolerance on the fast side: the baseline no longer holds the case, and a slowdown back
    to it would pass unseen. Said, so that the baseline is recorded again."""
    if decision.verdict is not Verdict.PASS or decision.ratio * (1.0 + decision.tolerance.tau) >= 1.0:
        return None
    unit = " (or this GPU unit is faster than the one it was recorded on)" if decision.tolerance.fleet else ""
    return (
        f"faster than its baseline, x{decision.ratio:.3f}, by more than its tolerance of "
        f"{decision.tolerance.tau * 100:.1f} %{unit}: a slowdown back to the baseline would pass unseen; record it "
        "again (`attnperf update`) to gate from here"
    )


def _latency(
    result: CaseRecord,
    marks: GateMarks,
    baseline: BaselineEntry | None,
    policy: GatePolicy,
    context: GateContext,
    answer: _Answer,
    dispatch_note: str | None,
    *,
    skip_missing: bool,
) -> None:
    spec = marks.latency
    assert spec is not None
    assert result.measurement.median_ms is not None
    budget = check_budget(result.measurement.median_ms, spec, context)
    if budget:
        answer.violations.append(budget)
    requested = spec.tolerance if spec.tolerance is not None else policy.latency_tolerance
    use_baseline = spec.use_baseline and not policy.updating
    if not use_baseline or baseline is None or baseline.median_ms is None:
        if use_baseline and not skip_missing and "latency" not in answer.verdicts:
            _missing(result, "latency", policy, answer)
        answer.verdicts.setdefault("latency", "REGRESSION" if budget else "ok")
        return
    decision = decide_latency(result, baseline, requested, policy.stage, policy.params)
    answer.latency = decision
    answer.notes.extend(decision.notes)
    faster = _faster(decision)
    if faster:  # a note (the terminal's attnperf section, the reports), not a PytestWarning: -W error must not fail it
        answer.notes.append(faster)
    if spec.tolerance is not None and baseline.detection_limit and spec.tolerance < baseline.detection_limit:
        warning = (
            f"{result.identity.test_id}: the marker asks to catch slowdowns over {spec.tolerance * 100:.1f} %, but "
            f"`attnperf calibrate` measured that this case detects only >= {baseline.detection_limit * 100:.1f} %"
        )
        answer.notes.append(warning)
        answer.warnings.append(warning)
    if decision.verdict is Verdict.REGRESSION:
        extra = [dispatch_note] if dispatch_note else []
        history = [*answer.history, float(str(decision.stage_record()["ratio"]))]
        clock_mhz = decision.normalisation.median_clock_mhz
        answer.violations.append(
            latency_violation(
                result.measurement.median_ms, baseline.median_ms, decision, history, clock_mhz, context, extra
            )
        )
        answer.verdicts["latency"] = "REGRESSION"
    elif decision.verdict is Verdict.AMBIGUOUS:
        answer.verdicts["latency"] = "ambiguous"
        answer.defer, answer.again = policy.stage == 1, policy.stage == 2
    else:
        answer.verdicts["latency"] = "REGRESSION" if budget else "ok"
        if policy.stage > 1:
            first = result.decision.stages[0]["ratio"] if result.decision.stages else decision.stage_record()["ratio"]
            answer.notes.append(f"the first measurement (x{first}) was not confirmed after a cool-down")


def _memory(
    result: CaseRecord,
    marks: GateMarks,
    baseline: BaselineEntry | None,
    policy: GatePolicy,
    context: GateContext,
    answer: _Answer,
    *,
    skip_missing: bool,
) -> None:
    spec = marks.memory
    assert spec is not None
    if result.measurement.peak_bytes is None:
        answer.warnings.append(
            f"{result.identity.test_id}: peak memory not measured ({result.measurement.reason}); memory check skipped"
        )
        answer.verdicts.setdefault("memory", "not measured")
        return
    tolerance = spec.tolerance if spec.tolerance is not None else policy.memory_tolerance
    use_baseline = spec.use_baseline and not policy.updating
    baseline_bytes = baseline.peak_bytes if (baseline is not None and use_baseline) else None
    if use_baseline and baseline_bytes is None and not skip_missing and "memory" not in answer.verdicts:
        _missing(result, "memory", policy, answer)
    violation = check_memory(
        result.measurement.peak_bytes, spec, tolerance=tolerance, baseline_bytes=baseline_bytes, context=context
    )
    if violation:
        answer.violations.append(violation)
    answer.verdicts.setdefault("memory", "REGRESSION" if violation else "ok")
