"""Pure checks: (spec, measurement, baseline) -> a Violation with a message a person can act on, or None."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from .stats import mann_whitney_greater
from .units import format_bytes, format_ms

EquivalenceRule = Literal["fa2", "fa3", "allclose"]


@dataclass(frozen=True)
class LatencySpec:
    """attnperf_latency: median within baseline*(1+tolerance) and/or under an absolute budget."""

    tolerance: float | None = None
    budget_ms: float | None = None
    use_baseline: bool = True
    cuda_graph: bool | None = None  # None: the run's --attnperf-cuda-graph setting


@dataclass(frozen=True)
class MemorySpec:
    """attnperf_memory: peak within baseline*(1+tolerance) and/or under an absolute ceiling."""

    tolerance: float | None = None
    ceiling_bytes: int | None = None
    use_baseline: bool = True


@dataclass(frozen=True)
class EquivalenceSpec:
    """attnperf_equivalence: FlashAttention's rule (fa2/fa3) or assert_close-style tolerances."""

    rule: EquivalenceRule = "fa2"
    factor: float = 2.0
    rtol: float = 1e-2
    atol: float = 2e-2


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


# ---------------------------------------------------------------- numerical equivalence


@dataclass(frozen=True)
class Equivalence:
    """How far an output is from the high-precision reference, and the budget it was allowed."""

    rule: EquivalenceRule
    max_error: float
    budget: float
    reference_error: float
    nonfinite: int
    elements: int
    first_nonfinite: tuple[int, ...] | None
    within_budget: bool
    floored: bool = False  # the fp32 floor, not the reference's own error, set the budget

    @property
    def passed(self) -> bool:
        return self.nonfinite == 0 and self.within_budget


def measure_equivalence(
    output: torch.Tensor,
    reference: torch.Tensor,
    low_precision_reference: torch.Tensor,
    spec: EquivalenceSpec,
) -> Equivalence:
    """Compare ``output`` with the high-precision ``reference`` under ``spec``.

    FlashAttention's rule (FACTS §3): max|out - ref| <= factor * max|ref_lowp - ref|, where
    ref_lowp is the same reference run in the input dtype; fa3 adds the reference's own
    rounding noise, 2 * max|(ref + 0.3 - 0.3) - ref|. NaN or Inf always fails.
    """
    if output.shape != reference.shape:
        raise ValueError(f"output shape {tuple(output.shape)} differs from the reference's {tuple(reference.shape)}")
    finite = torch.isfinite(output)
    nonfinite = int((~finite).sum())
    first = tuple(int(i) for i in (~finite).nonzero()[0].tolist()) if nonfinite else None
    reference = reference.to(torch.float64) if reference.dtype == torch.float64 else reference.float()
    difference = (output.to(reference.dtype) - reference).abs()
    max_error = float(difference.nan_to_num(nan=math.inf).max()) if output.numel() else 0.0
    reference_error = (
        float((low_precision_reference.to(reference.dtype) - reference).abs().max()) if output.numel() else 0.0
    )
    if spec.rule == "allclose":
        # assert_close semantics: every element within atol + rtol*|ref|.
        within = bool((difference <= spec.atol + spec.rtol * reference.abs()).all())
        budget = spec.atol + spec.rtol * float(reference.abs().max()) if output.numel() else spec.atol
        return Equivalence("allclose", max_error, budget, reference_error, nonfinite, output.numel(), first, within)
    budget = spec.factor * reference_error
    floored = False
    if low_precision_reference.dtype == torch.float32 and output.numel():
        # FlashAttention's rule was made for fp16/bf16. An fp32 reference is as precise as the fp32
        # kernels it judges, so a different summation order alone can exceed 2x its error; floor the
        # budget at fp32's accumulation noise (2**-16 of the largest output), far below TF32's error.
        floor = spec.factor * 2.0**-16 * float(reference.abs().max())
        floored = floor > budget
        budget = max(budget, floor)
    if spec.rule == "fa3":
        budget += 2.0 * float(((reference + 0.3 - 0.3) - reference).abs().max())
    within = max_error <= budget
    return Equivalence(spec.rule, max_error, budget, reference_error, nonfinite, output.numel(), first, within, floored)


def describe_mismatch(result: Equivalence) -> str | None:
    """What is wrong with an output (NaN/Inf positions, or error over budget), or None when it agrees."""
    if result.nonfinite:
        return (
            f"{result.nonfinite} of {result.elements} output elements are NaN or Inf "
            f"(first at index {result.first_nonfinite})"
        )
    if result.within_budget:
        return None
    if result.rule == "allclose":
        return f"max |out - ref| = {result.max_error:.3g}: some elements exceed atol + rtol*|ref| (at most {result.budget:.3g})"
    if result.floored:
        return (
            f"max |out - ref| = {result.max_error:.3g} exceeds the budget {result.budget:.3g} "
            f"({result.rule} rule with the fp32 floor of 2 x 2**-16 x max|ref|; the input-dtype reference's "
            f"own error {result.reference_error:.3g})"
        )
    multiple = result.budget / result.reference_error if result.reference_error else 0.0
    return (
        f"max |out - ref| = {result.max_error:.3g} exceeds the budget {result.budget:.3g} "
        f"({result.rule} rule: {multiple:.3g} x the input-dtype reference's own error {result.reference_error:.3g})"
    )


def check_equivalence(mismatch: str | None, context: GateContext) -> Violation | None:
    """A violation carrying the mismatch description, or None when the output agreed."""
    if mismatch is None:
        return None
    return Violation("equivalence", f"numerical mismatch in {context.test_id}: {mismatch} {context.where()}")
