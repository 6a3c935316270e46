"""One test's gate: its marks, its baseline and the run's policy decide its result, inside the test.

The ``attnperf`` fixture hands a :class:`CaseGate` to the runner. After a measurement the runner
asks whether one more is needed (:meth:`CaseGate.again`), then to finish the case. Each time the
gate (:func:`.gate.evaluate.decide`) only answers, with a frozen Decision; here the last one
becomes the test's own outcome (``pytest.fail`` / ``pytest.skip``) and the case's record, built
once from the measurement and the decision, a user property.
An ambiguous first measurement is *deferred*: the test passes for now, its reports are held,
and the session runs it again at its end after a cool-down (:mod:`.deferral`), where it is
decided and reported once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from ..gate.checks import GateContext
from ..gate.evaluate import Decision, GatePolicy, decide
from ..gate.power import power_window_skip
from ..gate.results import RECORD_PROPERTY, CaseRecord
from ..spec.marks import GateMarks
from .calibration import Calibration
from .state import AttnPerfSession


@dataclass
class Deferred:
    """A case whose first measurement was ambiguous: measured again at the end of the session."""

    first: CaseRecord
    stage: int = 2  # the stage of its next measurement
    reports: list[pytest.TestReport] = field(default_factory=list)  # the first run's reports, held back


DEFERRED_KEY = pytest.StashKey[Deferred]()
DEFERRABLE_KEY = pytest.StashKey[bool]()  # set by the session's protocol: this item's reports can be held


class CaseGate:
    """The gate of one test item."""

    def __init__(self, session: AttnPerfSession, item: pytest.Item, marks: GateMarks) -> None:
        self.session, self.item, self.marks = session, item, marks
        deferred = item.stash.get(DEFERRED_KEY, None)
        self.first = deferred.first if deferred is not None else None
        self.stage = deferred.stage if deferred is not None else 1
        self.fingerprint = self.stage == 1 and self._fingerprint_matters()
        self.deferrable = item.stash.get(DEFERRABLE_KEY, False)

    def _fingerprint_matters(self) -> bool:
        """Profile the kernels only where they can change the verdict or are recorded: an update writes them, a
        baseline entry that has a fingerprint is compared with them. A re-measurement keeps its first one's."""
        settings = self.session.settings
        if settings.fingerprint == "off" or (self.marks.latency is None and not settings.update):
            return False
        if settings.update:
            return True
        entry = self.session.baseline_entry(self.item.nodeid)
        return entry is not None and entry.fingerprint is not None

    # ------------------------------------------------------------ the runner's questions

    def calibration(self) -> Calibration | None:
        settings = self.session.settings
        if not settings.calibrate or self.marks.latency is None:
            return None
        return Calibration(baseline=self.session.baseline_entry(self.item.nodeid), cool_down=self.session.cool_down)

    def power_window(self, median_ms: float) -> str | None:
        """Measure the mean power while running only where it is recorded or said next to a baseline's
        (``gate/power.py``); otherwise why not, for the record."""
        settings = self.session.settings
        latency = self.marks.latency
        # attnperf calibrate judges its trials, stores only detection limits and says no power: nothing reads it.
        compared = latency is not None and latency.use_baseline and not settings.calibrate
        entry = self.session.baseline_entry(self.item.nodeid) if compared else None
        return power_window_skip(
            settings.power,
            recording=settings.update,
            baseline_median_ms=entry.median_ms if entry is not None else None,
            baseline_power_w=entry.power_w if entry is not None else None,
            median_ms=median_ms,
        )

    def again(self, result: CaseRecord) -> CaseRecord | None:
        """An ambiguous measurement that cannot wait for the session's end (or is already its re-measurement)
        is measured once more here, after a cool-down: the record with this measurement's stage, or None."""
        result = self._with_history(result)
        if self.stage == 1 and self.deferrable:
            return None  # the session re-measures it at its end
        if self.stage >= 3 or result.measurement.median_ms is None:
            return None
        decision = self._decide(result)  # a question: the gate writes into nothing
        if not (decision.defer or decision.again) or decision.latency is None:
            return None
        self.stage += 1
        self.session.cool_down()
        stages = [*result.decision.stages, decision.latency.stage_record()]
        return replace(result, decision=replace(result.decision, stages=stages))

    def finish(self, result: CaseRecord, on_final: Callable[[], None] | None = None) -> CaseRecord:
        """Decide this case's verdict now (or defer it to the session's end), so a regression fails its own test.

        The record is built once, from the measurement and the decision, and attached to the test's report.
        ``on_final`` (pytest-benchmark's samples) runs only for a verdict that is final: a deferred case
        reports from its re-run, once."""
        result = self._with_history(result)
        decision = self._decide(result)
        violations, skip_reason = decision.violations, decision.skip_reason
        deferred = decision.defer and not violations and not skip_reason
        outcome = "failed" if violations else "skipped" if skip_reason else None
        ambiguous = ("ambiguous: measured again at the end of the session, after a cool-down",) if deferred else ()
        record = decision.record(result, outcome=outcome, notes=ambiguous)
        if deferred:
            self.item.stash[DEFERRED_KEY] = Deferred(first=record)
        elif on_final is not None:
            on_final()
        self.item.user_properties.append((RECORD_PROPERTY, record.to_json()))
        self.item.user_properties.extend(record.junit_properties())
        for message in decision.warnings:
            warnings.warn(pytest.PytestWarning(message), stacklevel=1)
        if violations:
            pytest.fail("\n".join(violation.message for violation in violations), pytrace=False)
        if skip_reason:
            pytest.skip(skip_reason)
        return record

    # ------------------------------------------------------------ internals

    def _with_history(self, result: CaseRecord) -> CaseRecord:
        """A re-measurement carries the first measurement's ratios and median, and its kernels (profiled once)."""
        first = self.first
        if first is None:
            return result
        measured, first_measured = result.measurement, first.measurement
        return replace(
            result,
            decision=replace(result.decision, stages=result.decision.stages or list(first.decision.stages)),
            measurement=replace(
                measured,
                first_median_ms=measured.first_median_ms if result.decision.stages else first_measured.median_ms,
                fingerprint=measured.fingerprint if measured.fingerprint is not None else first_measured.fingerprint,
            ),
        )

    def _context(self) -> GateContext:
        session = self.session
        return GateContext(
            test_id=self.item.nodeid,
            device_name=session.info.name,
            baseline_file=session.baseline_file_label(),
            environment_changes=session.environment_changes(),
        )

    def _decide(self, result: CaseRecord) -> Decision:
        settings = self.session.settings
        policy = GatePolicy(
            latency_tolerance=settings.latency_tolerance,
            memory_tolerance=settings.memory_tolerance,
            missing=settings.missing,
            updating=settings.update or settings.calibrate,
            fingerprint=settings.fingerprint,  # type: ignore[arg-type]
            stage=self.stage,
        )
        return decide(result, self.marks, self.session.baseline_entry(self.item.nodeid), policy, self._context())
