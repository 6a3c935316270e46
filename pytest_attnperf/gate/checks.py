"""Pure checks: (spec, measurement, baseline) -> a Violation with a message a person can act on, or None."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..spec.marks import LatencySpec, MemorySpec
from ..spec.units import format_bytes, format_ms
from .statistics import mann_whitney_greater


@dataclass(frozen=True)
class GateContext:
    """Where a verdict comes from, for the failure message."""

    test_id: str
    device_name: str
    baseline_file: str
    environment_changes: tuple[str, ...] = ()

    def where(self) -> str:
        changed = (
            f"; changed since the baseline: {', '.join(self.environment_changes)}" if self.environment_changes else ""
        )
        return f"on {self.device_name}, baseline file {self.baseline_file}{changed}"


@dataclass(frozen=True)
class Violation:
    check: Literal["latency", "memory", "equivalence", "baseline"]
    message: str


# ---------------------------------------------------------------- latency and memory


def check_latency(
    median_ms: float,
    spec: LatencySpec,
    *,
    tolerance: float,
    baseline_ms: float | None,
    context: GateContext,
    samples_ms: Sequence[float] = (),
    baseline_quantiles_ms: Sequence[float] = (),
    alpha: float = 0.01,
) -> Violation | None:
    """Median over baseline*(1+tolerance), or over the absolute budget, is a violation.

    With the current samples and the baseline's stored quantiles, a median over the tolerance
    must also be significant: a one-sided Mann-Whitney U test of the samples against the
    baseline scaled by (1+tolerance), at level ``alpha``. Noise alone rarely passes both.
    """
    problems = []
    if spec.budget_ms is not None and median_ms > spec.budget_ms:
        problems.append(
            f"median {format_ms(median_ms)} is over the budget of {format_ms(spec.budget_ms)} "
            f"(x{median_ms / spec.budget_ms:.3f})"
        )
    if baseline_ms is not None and median_ms > baseline_ms * (1.0 + tolerance):
        ratio = median_ms / baseline_ms
        evidence = ""
        significant = True
        if samples_ms and baseline_quantiles_ms:
            limit = [value * (1.0 + tolerance) for value in baseline_quantiles_ms]
            p_value = mann_whitney_greater(samples_ms, limit)
            significant = p_value < alpha
            evidence = f"; Mann-Whitney p = {p_value:.2g} that the samples exceed baseline x{1 + tolerance:.2f}"
        if significant:
            problems.append(
                f"median {format_ms(median_ms)} vs baseline {format_ms(baseline_ms)}: x{ratio:.3f} "
                f"({(ratio - 1) * 100:+.1f} %), over the tolerance of {tolerance * 100:.1f} %{evidence}"
            )
    if not problems:
        return None
    return Violation("latency", f"latency regression in {context.test_id}: {'; '.join(problems)} {context.where()}")


def check_memory(
    peak_bytes: int,
    spec: MemorySpec,
    *,
    tolerance: float,
    baseline_bytes: int | None,
    context: GateContext,
) -> Violation | None:
    """Peak over baseline*(1+tolerance), or over the absolute ceiling, is a violation."""
    problems = []
    if spec.ceiling_bytes is not None and peak_bytes > spec.ceiling_bytes:
        problems.append(
            f"peak {format_bytes(peak_bytes)} ({peak_bytes} B) is over the ceiling of "
            f"{format_bytes(spec.ceiling_bytes)} ({spec.ceiling_bytes} B)"
        )
    if baseline_bytes is not None and peak_bytes > baseline_bytes * (1.0 + tolerance):
        ratio = peak_bytes / baseline_bytes if baseline_bytes else math.inf
        problems.append(
            f"peak {format_bytes(peak_bytes)} vs baseline {format_bytes(baseline_bytes)}: x{ratio:.3f} "
            f"({(ratio - 1) * 100:+.1f} %), over the tolerance of {tolerance * 100:.1f} %"
        )
    if not problems:
        return None
    return Violation("memory", f"memory regression in {context.test_id}: {'; '.join(problems)} {context.where()}")


def check_equivalence(mismatch: str | None, context: GateContext) -> Violation | None:
    """A violation carrying the mismatch description, or None when the output agreed."""
    if mismatch is None:
        return None
    return Violation("equivalence", f"numerical mismatch in {context.test_id}: {mismatch} {context.where()}")
