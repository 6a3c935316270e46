"""Replay the sampling's stopping rule on the samples a committed run recorded under the old fixed budget.

    python benchmarks/experiments/stopping_rule_replay.py docs/results/h200/record/report-run3.json.gz [--precision 0.003]

Each case's recorded samples, in their order, are fed to ``measure.sampling.collect`` (the rule itself,
not a copy): how many it keeps, their kernel time, the lead spin they would cost at the case's recorded
lead, and how far the shorter median lies from the median of the same number of samples taken last in
the run (drift between two independent stretches of one run, which no stopping rule can see).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from typing import Any

from pytest_attnperf.measure.sampling import PRECISION, Sample, collect


class Replay:
    """A sample source that hands out a recorded run's samples in order (and stops when they run out)."""

    def __init__(self, times: list[float]) -> None:
        self.times, self.taken = times, 0

    def take(self, count: int) -> list[Sample]:
        out = [Sample(time, None) for time in self.times[self.taken : self.taken + count]]
        self.taken += len(out)
        return out


def load(path: str) -> dict[str, Any]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report")
    parser.add_argument("--precision", type=float, default=PRECISION)
    parser.add_argument("--min-samples", type=int, default=10)
    parser.add_argument("--rep-ms", type=float, default=100.0)
    arguments = parser.parse_args(argv)
    recorded = kept = 0
    kernel_before = kernel_after = lead_before = lead_after = 0.0
    drifts = []
    for case in load(arguments.report)["results"]:
        times = case.get("samples_ms") or []
        if len(times) < arguments.min_samples:
            continue
        result = collect(
            Replay(times), arguments.min_samples, threshold_mhz=None, rep_ms=arguments.rep_ms,
            max_samples=len(times), precision=arguments.precision,
        )  # fmt: skip
        count = len(result.kept)
        lead = (case.get("timing_info") or {}).get("lead_ms", 0.0)
        recorded, kept = recorded + len(times), kept + count
        kernel_before, kernel_after = kernel_before + sum(times), kernel_after + sum(times[:count])
        lead_before, lead_after = lead_before + lead * len(times), lead_after + lead * count
        if len(times) >= 2 * count:
            drifts.append(abs(statistics.median(times[:count]) / statistics.median(times[-count:]) - 1))
    drifts.sort()
    print(f"report: {arguments.report}; precision {arguments.precision}, minimum {arguments.min_samples} samples")
    print(f"samples: {recorded} recorded, {kept} kept by the rule ({kept / recorded:.1%})")
    print(f"sampled kernel time: {kernel_before / 1e3:.1f} s recorded, {kernel_after / 1e3:.1f} s kept")
    print(f"lead spin at the recorded leads: {lead_before / 1e3:.1f} s recorded, {lead_after / 1e3:.1f} s kept")
    if drifts:
        print(f"first-n vs last-n median, {len(drifts)} cases: p50 {drifts[len(drifts) // 2]:.2%}, "
              f"p90 {drifts[int(0.9 * len(drifts))]:.2%}, max {drifts[-1]:.2%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
