"""Drift: a case whose medians move steadily across CI runs, though each run passed its gate (no torch).

A gate compares one run with a baseline; a creep of a fraction of a percent per run stays inside any
tolerance, and a re-baseline hides it for good. Across runs it is a trend, and a trend has standard
tests. The rule, applied per case and GPU model to the log of its medians in run order:

- at least ``min_runs`` runs (6): with fewer, no ordering is rare enough to pass the test below;
- Kendall's tau between run index and log median (the Mann-Kendall trend test; scipy.stats.kendalltau,
  exact for small samples) significant at ``alpha`` (0.01, two-sided): the medians rise (or fall) in
  order more often than noise orders them;
- the Theil-Sen slope (scipy.stats.theilslopes: the median of pairwise slopes, robust to an outlier
  run) at least ``min_step`` per run (0.5 %): a trend too small to matter is not flagged.

Both tests are rank-based, so one noisy run neither makes nor breaks a flag. The x axis is the run's
index, not its time: CI runs are not evenly spaced, and "per run" is what a team reads. Over hundreds
of cases a few would pass p < 0.01 by chance alone; the minimum effect is what keeps noise out (an
unchanged case would also need a steady 0.5 % per run). A step (a new driver, a new wheel) orders the
runs too and is flagged as well: ``attnperf compare`` of the runs around it names what changed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DriftRule:
    min_runs: int = 6
    alpha: float = 0.01
    min_step: float = 0.005  # fraction per run

    def describe(self) -> str:
        return (
            f"at least {self.min_runs} runs, Kendall's tau significant at p < {self.alpha:g} and a Theil-Sen "
            f"slope of at least {100 * self.min_step:g} % per run"
        )


@dataclass(frozen=True)
class Trend:
    step: float  # Theil-Sen slope as a fraction per run: +0.01 is 1 % slower each run
    p_value: float  # Kendall's tau, two-sided
    runs: int
    drifting: bool

    @property
    def direction(self) -> str:
        return "slower" if self.step > 0 else "faster"

    def describe(self) -> str:
        return f"{100 * self.step:+.2f} %/run (p={self.p_value:.2g})"


def trend(medians: Sequence[float], rule: DriftRule = DriftRule()) -> Trend | None:
    """The trend of a case's medians in run order; None when there are too few runs to test."""
    if len(medians) < max(rule.min_runs, 3) or any(value <= 0 for value in medians):
        return None
    from scipy import stats  # only when a history is read, never when the plugin loads

    runs = list(range(len(medians)))
    logs = [math.log(value) for value in medians]
    if max(logs) == min(logs):  # a constant series has no rank order at all
        return Trend(step=0.0, p_value=1.0, runs=len(medians), drifting=False)
    p_value = float(stats.kendalltau(runs, logs).pvalue)
    slope = float(stats.theilslopes(logs, runs).slope)
    step = math.expm1(slope)
    drifting = p_value < rule.alpha and abs(step) >= rule.min_step
    return Trend(step=step, p_value=p_value, runs=len(medians), drifting=drifting)
