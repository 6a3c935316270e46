"""Baseline entries from measured results: one test's N independent runs -> one entry (torch-free).

beta is fitted once on the pooled blocks of all N runs (their clock levels differ from run to run,
which is what makes beta identifiable for kernels whose clock is steady within a run); the
reference clock is the median of the runs' median clocks; each run's median is normalised to it.
The centre is the geometric mean of those run medians and the spread their log standard
deviation; the mean power over back-to-back calls and the machine reference measured next to the
case are the runs' medians (the power's log-sd between runs is kept beside it); both are computed from the *rounded* run medians, so the file is consistent as written.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .baseline_schema import BaselineEntry, round_significant
from .machine import Reference, median_reference, reference_of
from .normalise import fit_beta, median_clock, normalised_median
from .results import CaseRecord, MeasurementRecord
from .statistics import geometric_mean, log_spread


def _measured(measurement: MeasurementRecord) -> bool:
    return measurement.fits and measurement.median_ms is not None and bool(measurement.samples_ms)


def _fingerprint(runs: Sequence[MeasurementRecord]) -> dict[str, Any] | None:
    prints = [run.fingerprint for run in runs if run.fingerprint]
    if not prints:
        return None
    variants = Counter(str(sorted(p.items())) for p in prints)
    common = variants.most_common(1)[0][0]
    chosen = next(p for p in prints if str(sorted(p.items())) == common)
    return {key: value for key, value in chosen.items() if key in ("families", "variant", "kernels")}


def entry_from_runs(results: Sequence[CaseRecord], recorded_at: str) -> BaselineEntry:
    """One entry from the results of one test in N independent runs (N >= 1; runs that did not fit are left out)."""
    last = results[-1]
    runs = [result.measurement for result in results]
    measured = [run for run in runs if _measured(run)]
    common: dict[str, Any] = {
        "backend": last.identity.backend,
        "shape": last.identity.shape,
        "mode": last.identity.mode,
        "recorded_at": recorded_at,
        "environment": dict(last.provenance.environment),
        "gpu_uuids": tuple(
            sorted({str(uuid) for result in results if (uuid := (result.provenance.device_info or {}).get("uuid"))})
        ),
        "plugin_version": last.provenance.plugin_version,
        "timing": {**settings, "clock_source": last.measurement.clock_source, **_placement(runs)}
        if (settings := last.provenance.timing_settings)
        else None,
        "fingerprint": _fingerprint(runs),
    }
    if not measured:
        peaks = [run.peak_bytes for run in runs if run.fits and run.peak_bytes is not None]
        fits = any(run.fits for run in runs)
        return BaselineEntry(
            latency_ms=None, peak_bytes=max(peaks) if fits and peaks else None, fits=fits, runs=len(results), **common
        )
    times = [t for r in measured for t in (r.warmup_ms or []) + (r.samples_ms or [])]
    clocks = [c for r in measured for c in (r.warmup_clock_mhz or []) + (r.clock_mhz or [])]
    fit = fit_beta(times, clocks) if len(times) == len(clocks) else None
    beta = fit.beta if fit is not None and fit.identified else None  # over 1 only with its interval over 1
    run_clocks = [clock for r in measured if (clock := median_clock(r.clock_mhz or [])) is not None]
    reference = statistics.median(run_clocks) if run_clocks else None
    medians = tuple(
        round_significant(
            normalised_median(
                r.samples_ms or [], r.clock_mhz or [None] * len(r.samples_ms or []), reference, beta or 0.0
            )
        )
        for r in measured
    )
    usable = all(value > 0 and math.isfinite(value) for value in medians)
    # a median of 0 (a workload faster than the clock) is kept as it is: the writer refuses it with the reason
    spread = log_spread(list(medians)) if usable else None
    raw = [t for r in measured for t in r.samples_ms or []]
    latency = {
        "median": round_significant(geometric_mean(list(medians)) if usable else min(medians)),
        "raw_median": round_significant(statistics.median(r.median_ms for r in measured if r.median_ms is not None)),
        "iqr": round_significant(_iqr(raw)),
        "mean": round_significant(statistics.fmean(raw)),
        "stdev": round_significant(statistics.stdev(raw) if len(raw) > 1 else 0.0),
        "min": round_significant(min(raw)),
        "max": round_significant(max(raw)),
        "samples": len(raw),
    }
    powers = [p for r in measured if isinstance(p := (r.gpu or {}).get("burst_power_w"), (int, float)) and p > 0]
    power_spread = log_spread(powers)
    readings = [ref for r in measured if (ref := reference_of((r.gpu or {}).get("reference"))) is not None]
    machine = median_reference(readings)
    peaks = [r.peak_bytes for r in measured if r.peak_bytes is not None]
    return BaselineEntry(
        latency_ms=latency,
        peak_bytes=max(peaks) if peaks else None,
        fits=True,
        runs=len(measured),
        run_medians_ms=medians,
        spread=round_significant(spread, 3) if spread is not None else None,
        clock_mhz=round_significant(reference, 5) if reference is not None else None,
        beta=round(beta, 3) if beta is not None else None,
        beta_ci=(round(fit.low, 3), round(fit.high, 3)) if beta is not None and fit is not None else None,
        power_w=round_significant(statistics.median(powers)) if powers else None,
        power_spread=round_significant(power_spread, 3) if power_spread is not None else None,
        reference=stored_reference(machine) if machine else None,
        **common,
    )


def _iqr(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    return quartiles[2] - quartiles[0]


def runs_note(results: Sequence[CaseRecord]) -> str | None:
    """Said in the update report when not every run measured the case."""
    measured = sum(_measured(result.measurement) for result in results)
    if 0 < measured < len(results):
        return f"measured in {measured} of {len(results)} runs (the others did not fit or failed)"
    return None


def _placement(runs: list[MeasurementRecord]) -> dict[str, str]:
    """How this case's machine references were read (``gpu.reference_placement``: periodic or adjacent; "mixed" when
    its runs differ), in place of the run-wide setting: under ``adjacent`` only the long cases are read next to them."""
    placements = {str(p) for run in runs if (p := (run.gpu or {}).get("reference_placement"))}
    if not placements:
        return {}
    return {"machine_reference": placements.pop() if len(placements) == 1 else "mixed"}


def stored_reference(reference: Reference) -> dict[str, float]:
    """A machine reference as a baseline entry stores it: five significant digits (its clock's precision)."""
    return {key: round_significant(value, 5) for key, value in reference.as_dict().items()}
