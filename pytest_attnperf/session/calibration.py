"""`attnperf calibrate`: the smallest slowdown the gate catches in each case, measured with injected work.

For each case, after its plain measurement: extra GPU work (:mod:`.measure.injection`: a matmul
for compute-bound cases, beta >= 0.5, a copy for the others) sized to slow the case by 2, 3, 4,
5, 7.5, 10, 15, 20, 30 %, starting one level below what the case's spread predicts. Each level
runs a few trials through the real decision (first measurement, and for an ambiguous one the
cooled-down re-measurements); the first level caught in every trial gives the detection limit:
the slowdown *delivered* there (slowed over plain, at the baseline's clock), not the intended one.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..gate.baselines import BaselineEntry
from ..gate.latency import decide_latency
from ..gate.normalise import fit_beta
from ..gate.results import CaseRecord
from ..gate.statistics import DEFAULT_PARAMS, GateParams, Verdict, predicted_detection_limit, tolerance

if TYPE_CHECKING:
    from ..measure.memory import Workload

LEVELS = (0.02, 0.03, 0.04, 0.05, 0.075, 0.10, 0.15, 0.20, 0.30)
TRIALS = 3
RESIZE_OFF_BY = 0.3  # a first trial delivering 30 % off target resizes the injection for the next


@dataclass(frozen=True)
class Calibration:
    """What the trials are judged against, and how to cool down between a trial's measurements."""

    baseline: BaselineEntry | None
    cool_down: Callable[[], None]
    trials: int = TRIALS
    levels: tuple[float, ...] = LEVELS
    params: GateParams = field(default_factory=lambda: DEFAULT_PARAMS)


def _reference(calibration: Calibration, plain: CaseRecord) -> BaselineEntry:
    """The case's baseline, or (without one) an entry made from the plain measurement itself."""
    baseline = calibration.baseline
    if baseline is not None and baseline.fits and baseline.median_ms:
        return baseline
    fit = fit_beta(
        (plain.measurement.warmup_ms or []) + (plain.measurement.samples_ms or []),
        (plain.measurement.warmup_clock_mhz or []) + (plain.measurement.clock_mhz or []),
    )
    assert plain.measurement.median_ms is not None
    return BaselineEntry(
        backend=plain.identity.backend,
        shape=plain.identity.shape,
        mode=plain.identity.mode,
        latency_ms={"median": plain.measurement.median_ms},
        peak_bytes=plain.measurement.peak_bytes,
        fits=True,
        recorded_at="",
        environment={},
        clock_mhz=plain.decision.median_clock_mhz,
        beta=fit.beta if fit is not None and fit.identified else None,
    )


def _judge(result: CaseRecord, reference: BaselineEntry, stage: int, params: GateParams) -> tuple[Verdict, float]:
    decision = decide_latency(result, reference, None, stage, params)  # a question: it writes into nothing
    return decision.verdict, decision.ratio


def calibrate_case(
    calibration: Calibration,
    plain: CaseRecord,
    workload: Workload,
    trial: Callable[[Workload], CaseRecord],
    device: Any,
    dtype: Any,
) -> dict[str, Any]:
    """Inject growing slowdowns until every trial is caught; the record of each level and the limit."""
    from ..measure.injection import Injector, delivered

    reference = _reference(calibration, plain)
    params = calibration.params
    plain_ratio = _judge(plain, reference, 1, params)[1]
    predicted = predicted_detection_limit(tolerance(reference.runs, reference.spread, None, params))
    beta = reference.beta if reference.beta is not None else 1.0
    injector = Injector(device, dtype, "compute" if beta >= 0.5 else "memory")
    start = max(
        0, next((i for i, level in enumerate(calibration.levels) if level >= predicted), len(calibration.levels)) - 1
    )
    record: dict[str, Any] = {
        "predicted": round(predicted, 4),
        "kind": injector.kind,
        "levels": [],
        "detection_limit": None,
    }
    assert plain.measurement.median_ms is not None
    try:
        for level in calibration.levels[start:]:
            size = injector.size_for(level * plain.measurement.median_ms)
            caught, deliveries = 0, []
            for index in range(calibration.trials):
                verdict, ratio = _judge(trial(injector.wrap(workload, size)), reference, 1, params)
                deliveries.append(delivered(plain_ratio, ratio))
                stage = 1
                while verdict is Verdict.AMBIGUOUS and stage < 3:
                    calibration.cool_down()
                    stage += 1
                    verdict, _ = _judge(trial(injector.wrap(workload, size)), reference, stage, params)
                caught += verdict is Verdict.REGRESSION
                if index == 0 and deliveries[0] > 0 and abs(deliveries[0] / level - 1) > RESIZE_OFF_BY:
                    size = max(1, int(size * level / deliveries[0]))
            achieved = statistics.median(deliveries)
            record["levels"].append(
                {"target": level, "delivered": round(achieved, 4), "caught": caught, "trials": calibration.trials}
            )
            if caught == calibration.trials:
                if achieved > 0:
                    record["detection_limit"] = round(achieved, 4)
                else:  # every trial failed with nothing measurably added: the case fails its baseline as it is
                    record["unchanged_fails"] = True
                break
    finally:
        injector.release()
    return record
