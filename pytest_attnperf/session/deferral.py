"""Ambiguous cases are measured again at the end of the session, after a cool-down, and reported once.

The plugin runs each gated item's protocol itself (as pytest-rerunfailures does: ``runtestprotocol``
with ``log=False``, then logging the reports it keeps). When the gate deferred the item (an
ambiguous first measurement, see :mod:`.case_gate`), its reports are held back; after the last
item, each held item runs its whole protocol again (its own warm-up; the gate knows it is the
re-measurement) and only those reports are logged: terminal, JUnit and pytest-xdist see the item
once. Interrupted before that, the held reports are logged as they were.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from _pytest.runner import runtestprotocol

from .case_gate import DEFERRABLE_KEY, DEFERRED_KEY
from .state import AttnPerfSession


def _log(item: pytest.Item, reports: Sequence[pytest.TestReport]) -> None:
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


class Deferrer:
    """The items held back in this process, and their re-measurement at the end."""

    def __init__(self, state: AttnPerfSession) -> None:
        self.state = state
        self.held: list[pytest.Item] = []

    def run_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
        item.stash[DEFERRABLE_KEY] = True
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        deferred = item.stash.get(DEFERRED_KEY, None)
        if deferred is not None and deferred.stage == 2 and all(report.passed for report in reports):
            deferred.reports = reports
            self.held.append(item)
            return True
        if deferred is not None:  # the run failed for another reason: that failure stands, reported now
            del item.stash[DEFERRED_KEY]
        _log(item, reports)
        return True

    def finish(self, *, interrupted: bool) -> None:
        """Re-measure every held item (or, interrupted, log what it had): each reports exactly once."""
        held, self.held = self.held, []
        for index, item in enumerate(held):
            deferred = item.stash[DEFERRED_KEY]
            if interrupted:
                _log(item, deferred.reports)
                continue
            # the first run is not logged (the re-run's reports replace it): its time is counted here
            self.state.cost.held_s += deferred.reports[-1].stop - deferred.reports[0].start
            cooling = time.perf_counter()
            self.state.cool_down()
            self.state.cost.cool_down_s += time.perf_counter() - cooling
            # the re-run records itself afresh: drop the first run's record and JUnit properties
            item.user_properties[:] = [
                (name, value) for name, value in item.user_properties if not str(name).startswith("attnperf_")
            ]
            # the next held item as nextitem: fixtures they share (a model, a module's inputs) are set up once
            nextitem = held[index + 1] if index + 1 < len(held) else None
            _log(item, runtestprotocol(item, nextitem=nextitem, log=False))


def wants_protocol(state: AttnPerfSession, has_latency_mark: bool) -> bool:
    """Only gated latency cases of a gating run (not an update, not a calibration) are deferrable."""
    settings = state.settings
    return settings.enabled and has_latency_mark and not settings.update and not settings.calibrate
