"""Pure checks and messages: (spec, measurement, baseline) -> a Violation a person can act on, or None."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..spec.marks import LatencySpec, MemorySpec
from ..spec.units import format_bytes, format_ms

if TYPE_CHECKING:
    from .latency import LatencyDecision


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
    check: Literal["latency", "memory", "equivalence", "baseline", "dispatch"]
    message: str


# ---------------------------------------------------------------- latency


def check_budget(median_ms: float, spec: LatencySpec, context: GateContext) -> Violation | None:
    """An absolute budget is a promise about every run: one measurement over it fails."""
    if spec.budget_ms is None or median_ms <= spec.budget_ms:
        return None
    return Violation(
        "latency",
        f"latency regression in {context.test_id}: median {format_ms(median_ms)} is over the budget of "
        f"{format_ms(spec.budget_ms)} (x{median_ms / spec.budget_ms:.3f}) {context.where()}",
    )


def latency_evidence(median_ms: float, baseline_ms: float, decision: LatencyDecision, clock_mhz: float | None) -> str:
    """'median 1.2 ms vs baseline 1.1 ms: x1.091 raw, x1.082 at the baseline's clock (+8.2 %)'."""
    raw = decision.raw_ratio
    text = f"median {format_ms(median_ms)} vs baseline {format_ms(baseline_ms)}: x{raw:.3f}"
    if decision.normalised_ratio is not None and decision.normalised_ratio != raw:
        clock = f"{clock_mhz:.0f} MHz; " if clock_mhz else ""
        text += f" raw, x{decision.normalised_ratio:.3f} at the baseline's clock ({clock}normalised)"
    explanation = decision.explanation()
    return text + f" ({(decision.ratio - 1) * 100:+.1f} %)" + (f"; {explanation}" if explanation else "")


def latency_violation(
    median_ms: float,
    baseline_ms: float,
    decision: LatencyDecision,
    history: Sequence[float],
    clock_mhz: float | None,
    context: GateContext,
    extra: Sequence[str] = (),
) -> Violation:
    """The message of a confirmed (or clear) regression: the ratio of every measurement, the tolerance, p."""
    parts = [
        latency_evidence(median_ms, baseline_ms, decision, clock_mhz),
        f"over the tolerance of {decision.tolerance.describe()}",
    ]
    if len(history) > 1:
        ratios = ", ".join(f"x{ratio:.3f}" for ratio in history)
        parts.append(
            f"measured {len(history)} times, the later ones at the end of the session after a cool-down: {ratios}"
        )
    else:
        parts.append("far over the line at the first measurement")
    parts.append(f"p = {decision.p_value:.2g} that an unchanged kernel measures this slow")
    parts.extend(extra)
    return Violation("latency", f"latency regression in {context.test_id}: {'; '.join(parts)} {context.where()}")


# ---------------------------------------------------------------- memory, equivalence, baseline identity


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
    if baseline_bytes == 0 and peak_bytes > 0:
        problems.append(f"peak {format_bytes(peak_bytes)} where the baseline allocated nothing (0 B)")
    elif baseline_bytes is not None and peak_bytes > baseline_bytes * (1.0 + tolerance):
        ratio = peak_bytes / baseline_bytes
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


def baseline_mismatch_message(test_id: str, differences: Sequence[str], baseline_file: str) -> str:
    return (
        f"the baseline of {test_id} in {baseline_file} was recorded for another problem "
        f"({', '.join(differences)}; recorded -> now): it cannot gate this run. Record this problem with "
        "`attnperf update` (which replaces the entry), or keep its baselines in another --attnperf-baselines folder"
    )
