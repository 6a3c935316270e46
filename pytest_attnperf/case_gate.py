"""One test's gate: its marks, its baseline and the run's policy decide its result, inside the test.

The ``attnperf`` fixture hands a :class:`CaseGate` to the runner, which asks it whether a first
measurement is suspect (measure again) and then to finish the case: the verdict becomes the
test's own outcome (``pytest.fail`` / ``pytest.skip``), its record a user property.
"""

from __future__ import annotations

import warnings

import pytest

from .gate.checks import GateContext
from .gate.evaluate import GatePolicy, equivalence_violation, evaluate_gate
from .gate.results import RECORD_PROPERTY, CaseResult
from .session import AttnPerfSession
from .spec.marks import GateMarks


class CaseGate:
    """The gate of one test item."""

    def __init__(self, session: AttnPerfSession, item: pytest.Item, marks: GateMarks) -> None:
        self.session, self.item, self.marks = session, item, marks

    def suspect(self, result: CaseResult) -> bool:
        """A median over its baseline's tolerance is measured again before the test may fail."""
        settings = self.session.settings
        latency = self.marks.latency
        baseline = self.session.baseline_entry(self.item.nodeid)
        if latency is None or settings.update or baseline is None or baseline.median_ms is None:
            return False
        tolerance = latency.tolerance if latency.tolerance is not None else settings.latency_tolerance
        return result.median_ms is not None and result.median_ms > baseline.median_ms * (1 + tolerance)

    def finish(self, result: CaseResult) -> None:
        """Decide this case's verdict now, so a regression fails its own test."""
        session, settings = self.session, self.session.settings
        context = GateContext(
            test_id=self.item.nodeid,
            device_name=result.device,
            baseline_file=session.baseline_file_label(),
            environment_changes=session.environment_changes(),
        )
        policy = GatePolicy(
            latency_tolerance=settings.latency_tolerance,
            memory_tolerance=settings.memory_tolerance,
            missing=settings.missing,
            updating=settings.update,
        )
        result.baseline_file = context.baseline_file
        outcome = evaluate_gate(result, self.marks, session.baseline_entry(self.item.nodeid), policy, context)
        mismatch = equivalence_violation(result, context)
        violations = ([mismatch] if mismatch else []) + outcome.violations
        if violations:
            result.outcome = "failed"
        elif outcome.skip_reason:
            result.outcome = "skipped"
        self.item.user_properties.append((RECORD_PROPERTY, result.to_json()))
        self.item.user_properties.extend(result.junit_properties())
        for message in outcome.warnings:
            warnings.warn(pytest.PytestWarning(message), stacklevel=1)
        if violations:
            pytest.fail("\n".join(violation.message for violation in violations), pytrace=False)
        if outcome.skip_reason:
            pytest.skip(outcome.skip_reason)
