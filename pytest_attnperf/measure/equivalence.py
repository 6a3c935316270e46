"""How far an output is from the high-precision reference, under FlashAttention's rule (FACTS §3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..spec.marks import EquivalenceRule, EquivalenceSpec


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
