"""The pure checks at their exact thresholds, the gate's verdicts, and the checks end to end."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from fast_run import CPU, FAST_OPTIONS

from pytest_attnperf.backends.registry import REGISTRY
from pytest_attnperf.gate.baselines import BaselineEntry, BaselineFile, baseline_path, load_baseline
from pytest_attnperf.gate.checks import GateContext, check_budget, check_equivalence, check_memory
from pytest_attnperf.gate.evaluate import Decision, GatePolicy, decide
from pytest_attnperf.gate.results import CaseRecord, flat_record
from pytest_attnperf.measure.equivalence import describe_mismatch, measure_equivalence
from pytest_attnperf.measure.inputs import make_qkv, torch_dtype
from pytest_attnperf.measure.reference import reference_attention
from pytest_attnperf.spec.marks import EquivalenceSpec, GateMarks, LatencySpec, MemorySpec
from pytest_attnperf.spec.shapes import AttnShape

CONTEXT = GateContext(
    test_id="test_attn.py::test_forward[flash-attn-4K]",
    device_name="NVIDIA H100 80GB HBM3",
    baseline_file="baselines/nvidia-h100-80gb-hbm3.yaml",
)
CHANGED = GateContext(
    test_id=CONTEXT.test_id,
    device_name=CONTEXT.device_name,
    baseline_file=CONTEXT.baseline_file,
    environment_changes=("torch 2.4.0 -> 2.5.1", "flash_attn 2.6.3 -> 2.8.3"),
)
FAST = ("--attnperf", *FAST_OPTIONS)


def above(value: float) -> float:
    """The next float above ``value``: a hair over a threshold."""
    return math.nextafter(value, math.inf)


# ---------------------------------------------------------------- latency: the absolute budget


@pytest.mark.parametrize("budget_ms", [2.5, 0.25, 1e-3, 1000.0])
def test_latency_at_the_budget_passes_and_a_hair_over_fails(budget_ms: float) -> None:
    spec = LatencySpec(budget_ms=budget_ms, use_baseline=False)
    assert check_budget(budget_ms, spec, CONTEXT) is None
    violation = check_budget(above(budget_ms), spec, CONTEXT)
    assert violation is not None
    assert violation.check == "latency"
    assert "is over the budget of" in violation.message


def test_latency_without_a_budget_has_nothing_to_fail() -> None:
    assert check_budget(1e9, LatencySpec(), CONTEXT) is None


def test_budget_message_names_the_changed_versions() -> None:
    violation = check_budget(0.5, LatencySpec(budget_ms=0.25), CHANGED)
    assert violation is not None
    assert violation.message == (
        "latency regression in test_attn.py::test_forward[flash-attn-4K]: median 0.5 ms is over the budget of "
        "0.25 ms (x2.000) on NVIDIA H100 80GB HBM3, baseline file baselines/nvidia-h100-80gb-hbm3.yaml; changed "
        "since the baseline: torch 2.4.0 -> 2.5.1, flash_attn 2.6.3 -> 2.8.3"
    )


# ---------------------------------------------------------------- memory


@pytest.mark.parametrize("ceiling", [1, 1024, 2**31, 80 * 2**30])
def test_memory_at_the_ceiling_passes_and_one_byte_over_fails(ceiling: int) -> None:
    spec = MemorySpec(ceiling_bytes=ceiling, use_baseline=False)
    assert check_memory(ceiling, spec, tolerance=0.05, baseline_bytes=None, context=CONTEXT) is None
    violation = check_memory(ceiling + 1, spec, tolerance=0.05, baseline_bytes=None, context=CONTEXT)
    assert violation is not None
    assert violation.check == "memory"
    assert f"({ceiling + 1} B) is over the ceiling of" in violation.message
    assert f"({ceiling} B)" in violation.message


@pytest.mark.parametrize(
    ("baseline_bytes", "tolerance", "largest_allowed"),
    [(1000, 0.05, 1050), (2**30, 0.05, 1127428915), (4096, 0.0, 4096), (100, 0.5, 150)],
)
def test_memory_at_the_tolerance_passes_and_one_byte_over_fails(
    baseline_bytes: int, tolerance: float, largest_allowed: int
) -> None:
    spec = MemorySpec()
    ok = check_memory(largest_allowed, spec, tolerance=tolerance, baseline_bytes=baseline_bytes, context=CONTEXT)
    assert ok is None
    over = check_memory(largest_allowed + 1, spec, tolerance=tolerance, baseline_bytes=baseline_bytes, context=CONTEXT)
    assert over is not None


def test_a_baseline_that_allocated_nothing_says_so_instead_of_an_infinite_ratio() -> None:
    # It used to read "x inf (+inf %)".
    assert check_memory(0, MemorySpec(), tolerance=0.05, baseline_bytes=0, context=CONTEXT) is None
    violation = check_memory(4096, MemorySpec(), tolerance=0.05, baseline_bytes=0, context=CONTEXT)
    assert violation is not None
    assert "peak 4 KiB where the baseline allocated nothing (0 B)" in violation.message
    assert "inf" not in violation.message


def test_memory_regression_message() -> None:
    violation = check_memory(
        3 * 2**30, MemorySpec(ceiling_bytes=2 * 2**30), tolerance=0.05, baseline_bytes=2**30, context=CONTEXT
    )
    assert violation is not None
    assert violation.message == (
        "memory regression in test_attn.py::test_forward[flash-attn-4K]: peak 3 GiB (3221225472 B) is over the "
        "ceiling of 2 GiB (2147483648 B); peak 3 GiB vs baseline 1 GiB: x3.000 (+200.0 %), over the tolerance of "
        "5.0 % on NVIDIA H100 80GB HBM3, baseline file baselines/nvidia-h100-80gb-hbm3.yaml"
    )


# ---------------------------------------------------------------- equivalence


def _exact_case() -> tuple[torch.Tensor, torch.Tensor]:
    """A float64 reference of zeros and an input-dtype reference whose own error is exactly 1e-3."""
    reference = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    low = reference.clone()
    low[1, 2, 3, 4] = 1e-3
    return reference, low


def test_fa2_budget_is_twice_the_reference_error_exactly_at_the_threshold() -> None:
    reference, low = _exact_case()
    output = reference.clone()
    output[0, 0, 0, 0] = 2e-3  # == 2 * max|low - ref|
    result = measure_equivalence(output, reference, low, EquivalenceSpec())
    assert (result.max_error, result.budget, result.reference_error) == (2e-3, 2e-3, 1e-3)
    assert result.passed
    assert describe_mismatch(result) is None

    output[0, 0, 0, 0] = above(2e-3)
    result = measure_equivalence(output, reference, low, EquivalenceSpec())
    assert not result.passed
    assert describe_mismatch(result) == (
        "max |out - ref| = 0.002 exceeds the budget 0.002 (fa2 rule: 2 x the input-dtype reference's own error 0.001)"
    )


@pytest.mark.parametrize("factor", [1.0, 2.0, 3.5])
def test_factor_scales_the_budget(factor: float) -> None:
    reference, low = _exact_case()
    result = measure_equivalence(reference, reference, low, EquivalenceSpec(factor=factor))
    assert result.budget == factor * 1e-3


def test_fa3_adds_the_references_rounding_noise() -> None:
    values = [0.1, 0.7, -1.3, 3.14159, 1e-5]
    reference = torch.tensor(values, dtype=torch.float64)
    low = reference + 1e-4
    noise = max(abs((x + 0.3 - 0.3) - x) for x in values)  # FACTS §3, in plain Python doubles
    assert noise > 0
    result = measure_equivalence(reference, reference, low, EquivalenceSpec(rule="fa3"))
    assert result.budget == pytest.approx(2 * 1e-4 + 2 * noise, rel=1e-9)
    fa2 = measure_equivalence(reference, reference, low, EquivalenceSpec(rule="fa2"))
    assert result.budget > fa2.budget


def _real_case(
    dtype: str, causal: bool, window: tuple[int, int], kv_heads: int
) -> tuple[AttnShape, torch.Tensor, torch.Tensor]:
    shape = AttnShape(
        q_len=64, k_len=64, heads=4, kv_heads=kv_heads, head_dim=16, dtype=dtype, causal=causal, window=window
    )
    qkv = make_qkv(shape, seed=0)
    high = torch.float64 if dtype == "float32" else torch.float32
    arguments = {"causal": causal, "window": window, "scale": None}
    reference = reference_attention(qkv.q, qkv.k, qkv.v, compute_dtype=high, **arguments)  # type: ignore[arg-type]
    low = reference_attention(qkv.q, qkv.k, qkv.v, compute_dtype=torch_dtype(shape.dtype), **arguments)  # type: ignore[arg-type]
    return shape, reference, low


REAL_CASES = [
    ("float32", True, (-1, -1), 4),
    ("float16", False, (-1, -1), 2),
    ("bfloat16", False, (16, 4), 1),
    ("float16", True, (8, 0), 2),
]


@pytest.mark.parametrize("backend", ["eager", "sdpa-math"])
@pytest.mark.parametrize(("dtype", "causal", "window", "kv_heads"), REAL_CASES)
def test_correct_backends_pass_the_fa2_rule(
    backend: str, dtype: str, causal: bool, window: tuple[int, int], kv_heads: int
) -> None:
    shape, reference, low = _real_case(dtype, causal, window, kv_heads)
    qkv = make_qkv(shape, seed=0)
    with torch.no_grad():
        output = REGISTRY.get(backend).run(qkv.q, qkv.k, qkv.v, shape)
    result = measure_equivalence(output, reference, low, EquivalenceSpec())
    assert result.passed, describe_mismatch(result)


@pytest.mark.parametrize(("dtype", "causal", "window", "kv_heads"), REAL_CASES)
def test_a_perturbed_output_fails_with_its_numbers(
    dtype: str, causal: bool, window: tuple[int, int], kv_heads: int
) -> None:
    _, reference, low = _real_case(dtype, causal, window, kv_heads)
    output = low.clone()
    output[0, 1, 5, 3] += 0.25
    result = measure_equivalence(output, reference, low, EquivalenceSpec())
    assert not result.passed
    assert result.nonfinite == 0
    message = describe_mismatch(result)
    assert message is not None
    assert f"max |out - ref| = {result.max_error:.3g} exceeds the budget {result.budget:.3g}" in message
    assert f"reference's own error {result.reference_error:.3g}" in message
    assert result.max_error == pytest.approx(0.25, rel=0.05)


@pytest.mark.parametrize("poison", [math.nan, math.inf, -math.inf])
def test_nan_or_inf_fails_with_count_and_first_index(poison: float) -> None:
    reference = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    low = reference + 1.0  # a huge budget: the non-finite values must fail anyway
    output = reference.float()
    output[1, 2, 0, 4] = poison
    output[1, 2, 3, 1] = poison
    for spec in (EquivalenceSpec(), EquivalenceSpec(rule="fa3"), EquivalenceSpec(rule="allclose", atol=1e9)):
        result = measure_equivalence(output, reference, low, spec)
        assert not result.passed
        assert result.nonfinite == 2
        assert result.first_nonfinite == (1, 2, 0, 4)
        assert describe_mismatch(result) == "2 of 120 output elements are NaN or Inf (first at index (1, 2, 0, 4))"


def test_allclose_rule_uses_atol_plus_rtol_times_reference() -> None:
    reference = torch.tensor([1.0, -2.0, 0.0, 4.0], dtype=torch.float64)
    low = reference.clone()
    spec = EquivalenceSpec(rule="allclose", rtol=0.5, atol=0.25)
    at_the_limit = reference + torch.tensor([0.75, -1.25, 0.25, 2.25], dtype=torch.float64)
    result = measure_equivalence(at_the_limit, reference, low, spec)
    assert result.passed
    assert result.budget == 0.25 + 0.5 * 4.0
    over = at_the_limit.clone()
    over[2] = above(0.25)  # |ref| = 0 here: only atol applies
    result = measure_equivalence(over, reference, low, spec)
    assert not result.passed
    assert describe_mismatch(result) == (
        "max |out - ref| = 2.25: some elements exceed atol + rtol*|ref| (at most 2.25)"
    )


def test_shape_mismatch_is_an_error_not_a_verdict() -> None:
    with pytest.raises(ValueError, match=r"output shape \(2, 3\) differs from the reference's \(3, 2\)"):
        measure_equivalence(torch.zeros(2, 3), torch.zeros(3, 2), torch.zeros(3, 2), EquivalenceSpec())


def test_check_equivalence_wraps_the_mismatch_with_test_and_place() -> None:
    assert check_equivalence(None, CONTEXT) is None
    violation = check_equivalence("1 of 4 output elements are NaN or Inf (first at index (0,))", CONTEXT)
    assert violation is not None
    assert violation.check == "equivalence"
    assert violation.message == (
        "numerical mismatch in test_attn.py::test_forward[flash-attn-4K]: 1 of 4 output elements are NaN or Inf "
        "(first at index (0,)) on NVIDIA H100 80GB HBM3, baseline file baselines/nvidia-h100-80gb-hbm3.yaml"
    )


# ---------------------------------------------------------------- the gate: marks + result + baseline


def _result(median_ms: float = 1.0, peak_bytes: int | None = 1000, fits: bool = True, **fields: object) -> CaseRecord:
    result = flat_record(
        test_id=CONTEXT.test_id,
        backend="flash-attn",
        device=CONTEXT.device_name,
        device_slug="nvidia-h100",
        mode="forward",
        shape=None,
        seqlen=4096,
        fits=fits,
        median_ms=median_ms if fits else None,
        samples_ms=[median_ms] * 10 if fits else None,
        clock_mhz=[None] * 10 if fits else None,
        peak_bytes=peak_bytes if fits else None,
        baseline_file=CONTEXT.baseline_file,
        reason=None if fits else "OutOfMemoryError: CUDA out of memory",
    )
    return result.with_fields(**fields)  # the record is frozen: a new one


def _entry(median_ms: float = 1.0, peak_bytes: int = 1000, fits: bool = True, **fields: Any) -> BaselineEntry:
    return BaselineEntry(
        backend="flash-attn",
        shape=None,
        mode="forward",
        latency_ms={"median": median_ms} if fits else None,
        peak_bytes=peak_bytes if fits else None,
        fits=fits,
        recorded_at="",
        environment={},
        **fields,
    )


def _policy(missing: str = "warn", updating: bool = False, **fields: Any) -> GatePolicy:
    fields.setdefault("latency_tolerance", 0.1)
    return GatePolicy(memory_tolerance=0.05, missing=missing, updating=updating, **fields)  # type: ignore[arg-type]


BOTH = GateMarks(latency=LatencySpec(), memory=MemorySpec(), equivalence=None)
LATENCY = GateMarks(latency=LatencySpec(), memory=None, equivalence=None)


def evaluate_gate(
    result: CaseRecord, marks: GateMarks, entry: BaselineEntry | None, policy: GatePolicy, context: GateContext
) -> tuple[Decision, CaseRecord]:
    """The gate's answer, and the record the case gate builds from it (the gate itself writes into nothing)."""
    decision = decide(result, marks, entry, policy, context)
    return decision, decision.record(result)


def test_gate_uses_the_run_tolerance_unless_the_mark_sets_one() -> None:
    result = _result(median_ms=1.5)
    outcome, result = evaluate_gate(result, BOTH, _entry(), _policy(), CONTEXT)
    assert [violation.check for violation in outcome.violations] == ["latency"]
    assert result.decision.verdicts == {"latency": "REGRESSION", "memory": "ok"}
    assert result.decision.baseline_median_ms == 1.0
    assert result.decision.tolerance == 0.1
    lenient = GateMarks(latency=LatencySpec(tolerance=0.6), memory=None, equivalence=None)
    assert evaluate_gate(_result(median_ms=1.5), lenient, _entry(), _policy(), CONTEXT)[0].violations == ()


THREE_RUNS = {"runs": 3, "run_medians_ms": (0.999, 1.0, 1.001), "spread": 0.001}


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_the_gate_only_answers_asked_twice_it_answers_the_same_and_changes_nothing(stage: int) -> None:
    """A trial question needs no copy: decide() reads its inputs and returns a frozen Decision."""
    result = _result(
        median_ms=1.2,
        clock_mhz=[1710.0] * 10,
        gpu={"reference": {"ms": 0.2 / 0.95, "clock_mhz": 1710.0}},
        stages=[{"stage": 1, "ratio": 1.05, "verdict": "ambiguous"}] if stage > 1 else [],
        fingerprint={"families": ["b"], "variant": "y"},
    )
    entry = _entry(
        clock_mhz=1800.0, beta=1.0, reference=REFERENCE, fingerprint={"families": ["a"], "variant": "x"}, **THREE_RUNS
    )
    before, entry_before = copy.deepcopy(result), copy.deepcopy(entry)
    policy = _policy(latency_tolerance=None, stage=stage)
    first = decide(result, BOTH, entry, policy, CONTEXT)
    second = decide(result, BOTH, entry, policy, CONTEXT)
    assert first == second
    assert result == before
    assert entry == entry_before
    assert first.violations
    assert first.verdict_of("latency") == "REGRESSION"
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.skip_reason = "x"  # type: ignore[misc]
    record = first.record(result, outcome="failed")
    assert result == before  # the record is a new value
    assert record.decision.verdicts == {"latency": "REGRESSION", "memory": "ok"}
    assert record.decision.stages[-1]["stage"] == stage
    assert record.decision.outcome == "failed"
    assert record.decision.baseline_median_ms == 1.0
    assert record.decision.beta_source == "baseline"


@pytest.mark.parametrize(
    ("stage", "ratio", "verdict", "defer", "again", "fails"),
    [
        (1, 1.03, "ok", False, False, False),
        (1, above(1.03), "ambiguous", True, False, False),
        (1, 1.2, "REGRESSION", False, False, True),
        (2, above(1.03), "REGRESSION", False, False, True),
        (2, 1.03, "ambiguous", False, True, False),
        (2, 1.0, "ok", False, False, False),
        (3, 1.03, "ok", False, False, False),
        (3, above(1.03), "REGRESSION", False, False, True),
    ],
)
def test_three_valued_latency_verdict_at_each_stage(
    stage: int, ratio: float, verdict: str, defer: bool, again: bool, fails: bool
) -> None:
    """A quiet three-run baseline is gated at the 3 % floor: over it, a first measurement is only ambiguous."""
    result = _result(median_ms=ratio)
    policy = GatePolicy(latency_tolerance=None, memory_tolerance=0.05, missing="warn", updating=False, stage=stage)
    outcome, result = evaluate_gate(result, LATENCY, _entry(**THREE_RUNS), policy, CONTEXT)
    assert result.decision.tolerance == 0.03
    assert result.decision.verdicts["latency"] == verdict
    assert (outcome.defer, outcome.again, bool(outcome.violations)) == (defer, again, fails)
    assert result.decision.stages[-1]["stage"] == stage


def test_a_confirmed_regression_names_every_measurement_and_p() -> None:
    result = _result(median_ms=1.06, stages=[{"stage": 1, "ratio": 1.05, "verdict": "ambiguous"}])
    policy = GatePolicy(latency_tolerance=None, memory_tolerance=0.05, missing="warn", updating=False, stage=2)
    outcome, result = evaluate_gate(result, LATENCY, _entry(**THREE_RUNS), policy, CHANGED)
    (violation,) = outcome.violations
    assert re.fullmatch(
        r"latency regression in test_attn\.py::test_forward\[flash-attn-4K\]: median 1\.06 ms vs baseline 1 ms: "
        r"x1\.060 \(\+6\.0 %\); over the tolerance of 3\.0 % \(auto, from the baseline's spread\); measured 2 "
        r"times, the later ones at the end of the session after a cool-down: x1\.050, x1\.060; p = \S+ that an "
        r"unchanged kernel measures this slow on NVIDIA H100 80GB HBM3, baseline file "
        r"baselines/nvidia-h100-80gb-hbm3\.yaml; changed since the baseline: torch 2\.4\.0 -> 2\.5\.1, flash_attn "
        r"2\.6\.3 -> 2\.8\.3",
        violation.message,
    ), violation.message


def test_the_clock_excuses_what_it_explains_and_the_message_shows_both_ratios() -> None:
    """A compute-bound case (beta 1) that ran at 0.95 of the baseline's clock is 5 % slower raw, 0 % normalised."""
    slow_clock = _result(median_ms=1.0 / 0.95, clock_mhz=[1710.0] * 10)
    entry = _entry(clock_mhz=1800.0, beta=1.0, beta_ci=(0.95, 1.05), **THREE_RUNS)
    outcome, slow_clock = evaluate_gate(slow_clock, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)
    assert outcome.violations == ()
    assert not outcome.defer
    assert slow_clock.normalised_ratio == pytest.approx(1.0)
    assert slow_clock.latency_ratio == pytest.approx(1 / 0.95)
    assert slow_clock.decision.beta_source == "baseline"
    real = _result(median_ms=1.2 / 0.95, clock_mhz=[1710.0] * 10)
    (violation,) = evaluate_gate(real, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)[0].violations
    assert "x1.263 raw, x1.200 at the baseline's clock (1710 MHz; normalised) (+20.0 %)" in violation.message


def test_a_clock_too_far_from_the_baselines_is_not_normalised() -> None:
    result = _result(median_ms=1.5, clock_mhz=[1000.0] * 10)
    entry = _entry(clock_mhz=1800.0, beta=1.0, **THREE_RUNS)
    outcome, result = evaluate_gate(result, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)
    assert [violation.check for violation in outcome.violations] == ["latency"]
    assert result.decision.normalised_median_ms == 1.5
    assert any("too far to normalise" in note for note in result.decision.notes)


# The old "power rule" (energy per call over time per call rising > 10 % refused normalisation) is gone: its
# energy spanned the lead spin, the flush and idle time (1-57x the GPU's mean power on the H200) and it moved by
# more than its threshold between unchanged runs. What replaces it: normalise only by what the machine explains.
REFERENCE = {"ms": 0.2, "clock_mhz": 1800.0}


def test_a_kernel_whose_own_clock_fell_further_than_the_machines_is_judged_on_the_rest() -> None:
    """Same cycles, more energy per cycle at the power cap: the clock falls 9 %, the machine's reference did not."""
    result = _result(median_ms=1.1, clock_mhz=[1636.0] * 10, gpu={"reference": REFERENCE})
    entry = _entry(clock_mhz=1800.0, beta=1.0, reference=REFERENCE, **THREE_RUNS)
    outcome, result = evaluate_gate(result, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)
    (violation,) = outcome.violations
    assert result.normalised_ratio == pytest.approx(1.1)
    assert any("the extra drop is the kernel's own" in note for note in result.decision.notes)
    assert "decided on the raw ratio" not in violation.message  # nothing was excused: one ratio decided


def test_the_clock_the_machine_explains_is_normalised_and_the_message_says_so() -> None:
    """The machine's reference fell to 0.98 of its clock too: the case's drop is the machine's, excused."""
    result = _result(
        median_ms=1.02, clock_mhz=[1764.0] * 10, gpu={"reference": {"ms": 0.2 / 0.98, "clock_mhz": 1764.0}}
    )
    entry = _entry(clock_mhz=1800.0, beta=1.0, reference=REFERENCE, **THREE_RUNS)
    outcome, result = evaluate_gate(result, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)
    assert outcome.violations == ()
    assert outcome.latency is not None
    assert outcome.latency.decided_by == "machine"
    assert result.normalised_ratio == pytest.approx(1.0, abs=1e-3)
    assert outcome.latency.explanation().startswith("decided on the normalised ratio x1.000 (raw x1.020")


def test_the_machine_is_credited_with_a_bounded_clock_drop_and_the_message_says_so() -> None:
    """The reference fell to 0.91 of its clock and so did the case: the machine is credited with 3 %, the rest is
    the case's (a reading that low came with unchanged kernels within 3 % on the H100)."""
    result = _result(
        median_ms=1.1, clock_mhz=[1636.0] * 10, gpu={"reference": {"ms": 0.2 / 0.9089, "clock_mhz": 1636.0}}
    )
    entry = _entry(clock_mhz=1800.0, beta=1.0, reference=REFERENCE, **THREE_RUNS)
    outcome, result = evaluate_gate(result, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)
    (violation,) = outcome.violations
    assert result.normalised_ratio == pytest.approx(1.1 * 0.97)
    assert any("credited with at most a 3 % lower clock (x0.970)" in note for note in result.decision.notes)
    assert "normalised by what the machine explains: x1.031 excused" in violation.message


@pytest.mark.parametrize(
    ("run", "recorded", "noted"),
    [("adjacent", "adjacent", False), ("periodic", None, False), ("adjacent", None, True), (None, "adjacent", True)],
)
def test_a_reading_taken_another_way_than_the_baselines_is_said(
    run: str | None, recorded: str | None, noted: bool
) -> None:
    """--attnperf-machine-reference=adjacent reads a long case's reference next to it: against a baseline read
    periodically (or recorded before the setting) the two readings may be of different states, and the verdict
    says so; a short case, read periodically under either setting, says nothing."""
    gpu: dict[str, object] = {"reference": REFERENCE, **({"reference_placement": run} if run else {})}
    result = _result(median_ms=1.0, clock_mhz=[1800.0] * 10, gpu=gpu)
    timing = {"machine_reference": recorded} if recorded else {"rep_ms": 100.0}
    entry = _entry(clock_mhz=1800.0, beta=1.0, reference=REFERENCE, timing=timing, **THREE_RUNS)
    outcome, result = evaluate_gate(result, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)
    assert not outcome.violations
    said = [note for note in result.decision.notes if "machine reference was read" in note]
    expected = (
        f"this case's machine reference was read {run or 'periodic'} in this run and {recorded or 'periodic'} in its "
        "baseline's: the two readings may be of different states (record and gate with one "
        "--attnperf-machine-reference)"
    )
    assert said == ([expected] if noted else [])


def test_a_regression_message_says_raw_normalised_what_the_machine_excused_and_which_decided() -> None:
    machine = {"ms": 0.2 / 0.98, "clock_mhz": 1764.0}  # the machine's reference 2 % lower in clock, as slow as that
    result = _result(median_ms=1.2, clock_mhz=[1764.0] * 10, gpu={"reference": machine})
    entry = _entry(clock_mhz=1800.0, beta=1.0, reference=REFERENCE, **THREE_RUNS)
    (violation,) = evaluate_gate(result, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)[0].violations
    assert (
        "x1.200 raw, x1.176 at the baseline's clock (1764 MHz; normalised) (+17.6 %); decided on the normalised ratio "
        "x1.176 (raw x1.200; normalised by what the machine explains: x1.020 excused)"
    ) in violation.message


def test_without_a_machine_reference_the_old_own_clock_rule_applies_and_says_so() -> None:
    result = _result(median_ms=1.1, clock_mhz=[1636.0] * 10, gpu={"energy_mj_per_call": 15.0})
    entry = _entry(clock_mhz=1800.0, beta=1.0, energy_mj=10.0, **THREE_RUNS)
    outcome, result = evaluate_gate(result, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)
    assert not outcome.violations
    assert outcome.latency is not None
    assert outcome.latency.decided_by == "own-clock"
    assert any("no machine reference" in note and "old rule" in note for note in result.decision.notes)


def test_mean_power_is_reported_beside_the_verdict_and_never_decides() -> None:
    result = _result(median_ms=1.0, clock_mhz=[1800.0] * 10, gpu={"reference": REFERENCE, "burst_power_w": 690.0})
    entry = _entry(clock_mhz=1800.0, beta=1.0, reference=REFERENCE, power_w=600.0, power_spread=0.01, **THREE_RUNS)
    outcome, result = evaluate_gate(result, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)
    assert not outcome.violations
    assert "mean power while running 690 W, x1.150 the baseline's, between-run spread 1.0 %" in result.decision.notes


def test_a_skipped_power_window_says_no_power_and_decides_the_same() -> None:
    skipped = {"reference": REFERENCE, "burst_power_w": None, "burst_power_skipped": "--attnperf-power=off"}
    result = _result(median_ms=1.0, clock_mhz=[1800.0] * 10, gpu=skipped)
    entry = _entry(clock_mhz=1800.0, beta=1.0, reference=REFERENCE, power_w=600.0, power_spread=0.01, **THREE_RUNS)
    outcome, result = evaluate_gate(result, LATENCY, entry, _policy(latency_tolerance=None), CONTEXT)
    assert not outcome.violations
    assert not any("power" in note for note in result.decision.notes)


def test_a_marker_tolerance_below_the_calibrated_detection_limit_is_reported() -> None:
    marks = GateMarks(latency=LatencySpec(tolerance=0.02), memory=None, equivalence=None)
    result = _result(median_ms=1.0)
    outcome, result = evaluate_gate(result, marks, _entry(detection_limit=0.04, **THREE_RUNS), _policy(), CONTEXT)
    assert list(outcome.warnings) == [
        f"{CONTEXT.test_id}: the marker asks to catch slowdowns over 2.0 %, but `attnperf calibrate` measured that "
        "this case detects only >= 4.0 %"
    ]
    assert result.decision.detection_limit == 0.04


@pytest.mark.parametrize(
    ("missing", "violations", "skip"),
    [("fail", ["baseline", "baseline"], False), ("skip", [], True), ("warn", [], False)],
)
def test_missing_baseline_policy(missing: str, violations: list[str], skip: bool) -> None:
    result = _result()
    outcome, result = evaluate_gate(result, BOTH, None, _policy(missing), CONTEXT)
    assert [violation.check for violation in outcome.violations] == violations
    assert (outcome.skip_reason is not None) == skip
    assert result.decision.verdicts == {"latency": "NO BASELINE", "memory": "NO BASELINE"}
    assert result.verdict() == "no baseline"
    if violations:
        assert outcome.violations[0].message.startswith(f"no latency baseline for {CONTEXT.test_id} on")
        assert "record one with `attnperf update`" in outcome.violations[0].message


@pytest.mark.parametrize(
    ("missing", "failed", "skipped"), [("fail", True, False), ("skip", False, True), ("warn", False, False)]
)
def test_a_baseline_of_another_problem_never_gates_silently(missing: str, failed: bool, skipped: bool) -> None:
    """Issue 12, defect 1: recorded with 8 heads in float32, run with 1 head in bfloat16 (and another mode)."""
    recorded = _entry(median_ms=100.0)
    recorded = dataclasses.replace(recorded, shape={"heads": 8, "dtype": "float32", "q_len": 64})
    result = _result(median_ms=1.0, shape={"heads": 1, "dtype": "bfloat16", "q_len": 64}, mode="forward+backward")
    outcome, result = evaluate_gate(result, BOTH, recorded, _policy(missing), CONTEXT)
    assert result.decision.verdicts == {"latency": "BASELINE MISMATCH", "memory": "BASELINE MISMATCH"}
    assert result.verdict() == "BASELINE MISMATCH"
    assert result.decision.baseline_median_ms is None  # never compared: not x0.01
    message = (
        f"the baseline of {CONTEXT.test_id} in {CONTEXT.baseline_file} was recorded for another problem "
        "(mode forward -> forward+backward, dtype float32 -> bfloat16, heads 8 -> 1; recorded -> now): it cannot "
        "gate this run. Record this problem with `attnperf update` (which replaces the entry), or keep its baselines "
        "in another --attnperf-baselines folder"
    )
    assert [v.message for v in outcome.violations] == ([message] if failed else [])
    assert (outcome.skip_reason == message) == skipped
    assert list(outcome.warnings) == ([message] if missing == "warn" else [])


def test_updating_reports_the_old_baseline_without_enforcing_it() -> None:
    result = _result(median_ms=100.0, peak_bytes=10**9)
    outcome, result = evaluate_gate(result, BOTH, _entry(), _policy("fail", updating=True), CONTEXT)
    assert outcome.violations == ()
    assert result.latency_ratio == 100.0


def test_updating_still_enforces_an_absolute_budget() -> None:
    marks = GateMarks(latency=LatencySpec(budget_ms=1.0, use_baseline=False), memory=None, equivalence=None)
    outcome, _ = evaluate_gate(_result(median_ms=2.0), marks, None, _policy(updating=True), CONTEXT)
    assert [violation.check for violation in outcome.violations] == ["latency"]


def test_a_case_that_no_longer_fits_even_in_a_clean_state_is_a_memory_regression() -> None:
    result = _result(fits=False)
    outcome, result = evaluate_gate(result, BOTH, _entry(), _policy(), CONTEXT)
    assert [violation.check for violation in outcome.violations] == ["memory"]
    assert "no longer fits in memory, even after freeing everything the plugin holds" in outcome.violations[0].message
    assert result.verdict() == "REGRESSION"


def test_a_case_that_never_fit_is_skipped() -> None:
    outcome, _ = evaluate_gate(_result(fits=False), BOTH, _entry(fits=False), _policy(), CONTEXT)
    assert outcome.violations == ()
    assert outcome.skip_reason == f"does not fit on {CONTEXT.device_name}: OutOfMemoryError: CUDA out of memory"


@pytest.mark.parametrize("missing", ["fail", "warn"])
def test_fits_now_but_the_baseline_did_not_is_a_recorded_change_not_no_baseline(missing: str) -> None:
    result = _result(median_ms=2.0)
    outcome, result = evaluate_gate(result, BOTH, _entry(fits=False), _policy(missing), CONTEXT)
    assert outcome.violations == ()
    assert outcome.skip_reason is None
    assert result.decision.verdicts["memory"] == "newly fits"
    assert "NO BASELINE" not in result.decision.verdicts.values()
    assert result.verdict() == "newly fits"
    assert any("fits now; its baseline did not fit: a recorded change" in note for note in result.decision.notes)


@pytest.mark.parametrize(("policy", "fails"), [("warn", False), ("fail", True), ("off", False)])
def test_a_changed_dispatch_is_reported_and_fails_with_the_option(policy: str, fails: bool) -> None:
    recorded = _entry(fingerprint={"families": ["pytorch_flash::flash_fwd_kernel"], "variant": "a" * 12}, **THREE_RUNS)
    result = _result(median_ms=1.0, fingerprint={"families": ["cudnn_generated_fort_native_sdpa"], "variant": "b" * 12})
    outcome, result = evaluate_gate(result, LATENCY, recorded, _policy(fingerprint=policy), CONTEXT)
    change = "dispatch changed: pytorch_flash::flash_fwd_kernel -> cudnn_generated_fort_native_sdpa"
    assert (change in result.decision.notes) == (policy != "off")
    assert bool(outcome.violations) == fails
    if fails:
        assert outcome.violations[0].message.startswith(f"{change} in {CONTEXT.test_id} (--attnperf-fingerprint=fail)")
        assert result.verdict() == "DISPATCH CHANGED"


def test_a_dispatch_change_is_named_in_a_latency_failure() -> None:
    recorded = _entry(fingerprint={"families": ["a"], "variant": "x"}, **THREE_RUNS)
    result = _result(median_ms=2.0, fingerprint={"families": ["b"], "variant": "y"})
    (violation,) = evaluate_gate(result, LATENCY, recorded, _policy(), CONTEXT)[0].violations
    assert "dispatch changed: a -> b" in violation.message


def test_unmeasured_memory_warns_instead_of_passing_silently() -> None:
    result = _result(peak_bytes=None)
    outcome, result = evaluate_gate(result, BOTH, _entry(), _policy(), CONTEXT)
    assert outcome.violations == ()
    assert result.decision.verdicts["memory"] == "not measured"
    assert len(outcome.warnings) == 1


def test_too_few_samples_is_an_explicit_result_never_an_empty_one() -> None:
    result = _result().with_fields(median_ms=None, reason="too few samples: 2 kept, 40 discarded as throttled")
    outcome, result = evaluate_gate(result, LATENCY, _entry(), _policy(), CONTEXT)
    assert result.decision.verdicts["latency"] == "not gated"
    assert result.verdict() == "not gated"
    assert list(outcome.warnings) == [
        f"{CONTEXT.test_id}: latency not gated: too few samples: 2 kept, 40 discarded as throttled"
    ]


# ---------------------------------------------------------------- end to end, through pytest


def _write_baseline(directory: Path, medians: dict[str, float]) -> Path:
    path = baseline_path(directory, CPU.slug)
    entries = {
        test_id: BaselineEntry(
            backend="eager",
            shape=None,
            mode="forward",
            latency_ms={"median": median},
            peak_bytes=1024,
            fits=True,
            recorded_at="2026-01-01T00:00:00Z",
            environment={},
        )
        for test_id, median in medians.items()
    }
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(BaselineFile(path, {"name": CPU.name, "slug": CPU.slug}, {}, entries).to_text(), encoding="utf-8")
    return path


def test_latency_gate_end_to_end_with_extreme_baselines(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gate="""
        import pytest

        @pytest.mark.attnperf_latency()
        def test_fast_baseline(attnperf, attn_backend, qkv):
            attnperf.measure(attn_backend, qkv)

        @pytest.mark.attnperf_latency()
        def test_slow_baseline(attnperf, attn_backend, qkv):
            attnperf.measure(attn_backend, qkv)
    """
    )
    path = _write_baseline(
        pytester.path / "baselines",
        {
            "test_gate.py::test_fast_baseline[eager-64]": 1e-6,
            "test_gate.py::test_slow_baseline[eager-64]": 1e6,
        },
    )
    before = path.read_bytes()
    reprec = pytester.inline_run(*FAST)
    reprec.assertoutcome(passed=1, failed=1)
    report = reprec.matchreport("test_fast_baseline", when="call")
    message = report.longreprtext
    assert message.startswith("latency regression in test_gate.py::test_fast_baseline[eager-64]: median ")
    assert re.search(
        r"median [0-9.]+ (us|ms) vs baseline 0\.001 us: x[0-9]+\.[0-9]{3} \(\+[0-9.]+ %\); "
        r"over the tolerance of 4\.1 % \(auto, from the baseline's spread\); far over the line at the first measurement",
        message,
    ), message
    assert f"on {CPU.name}, baseline file baselines/{CPU.slug}.yaml" in message
    assert "Traceback" not in message
    assert path.read_bytes() == before  # a gated run never rewrites its baselines


def test_latency_budget_end_to_end(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_budget="""
        import pytest

        @pytest.mark.attnperf_latency(budget=1e-6, baseline=False)
        def test_impossible_budget(attnperf, attn_backend, qkv):
            attnperf.measure(attn_backend, qkv)

        @pytest.mark.attnperf_latency(budget="1000 s", baseline=False)
        def test_generous_budget(attnperf, attn_backend, qkv):
            attnperf.measure(attn_backend, qkv)
    """
    )
    reprec = pytester.inline_run(*FAST, "--attnperf-missing=fail")
    reprec.assertoutcome(passed=1, failed=1)
    message = reprec.matchreport("test_impossible_budget", when="call").longreprtext
    assert "is over the budget of 0.001 us" in message


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="CPU peak memory needs Linux /proc")
def test_memory_ceiling_end_to_end(pytester: pytest.Pytester) -> None:
    # A fresh 8 MiB allocation raises the resident set by at least 8 MiB: a deterministic peak.
    pytester.makepyfile(
        test_memory="""
        import pytest
        import torch

        @pytest.mark.attnperf_memory(ceiling="1 B")
        def test_one_byte(attnperf):
            attnperf.measure_workload(lambda: torch.ones(1 << 21), name="alloc")

        @pytest.mark.attnperf_memory(ceiling="1 TiB")
        def test_one_tebibyte(attnperf):
            attnperf.measure_workload(lambda: torch.ones(1 << 21), name="alloc")
    """
    )
    reprec = pytester.inline_run(*FAST)
    reprec.assertoutcome(passed=1, failed=1)
    message = reprec.matchreport("test_one_byte", when="call").longreprtext
    assert message.startswith("memory regression in test_memory.py::test_one_byte: peak ")
    assert "is over the ceiling of 1 B (1 B)" in message
    assert f"on {CPU.name}, baseline file baselines/{CPU.slug}.yaml" in message


EQUIVALENCE_TEST = """
    import pytest

    @pytest.mark.attnperf_equivalence()
    def test_forward(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
"""


def _run_with_backends(pytester: pytest.Pytester, conftest: str, backends: str, *extra: str) -> pytest.RunResult:
    """A subprocess: the conftest registers backends in the process-wide registry."""
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_equivalence=EQUIVALENCE_TEST)
    arguments = [arg for arg in FAST if not arg.startswith("--attnperf-backends")]
    return pytester.runpytest_subprocess(*arguments, f"--attnperf-backends={backends}", *extra)


@pytest.mark.slow
def test_a_wrong_backend_fails_equivalence_and_is_not_recorded(pytester: pytest.Pytester) -> None:
    result = _run_with_backends(
        pytester,
        """
        from pytest_attnperf import register_backend

        @register_backend("wrong", description="returns zeros")
        def wrong(q, k, v, shape):
            return q * 0
    """,
        "eager,wrong",
        "--attnperf-update",
    )
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.re_match_lines(
        [
            r"numerical mismatch in test_equivalence\.py::test_forward\[wrong-64\]: max \|out - ref\| = \S+ exceeds the "
            r"budget \S+ \(fa2 rule.* reference's own error (is )?\S+\) on .+, baseline file "
            rf"baselines/{re.escape(CPU.slug)}\.yaml",
        ]
    )
    # The equivalence verdict holds in update mode too; only the output that agrees becomes a baseline.
    baseline = load_baseline(baseline_path(pytester.path / "baselines", CPU.slug))
    assert baseline is not None
    assert list(baseline.entries) == ["test_equivalence.py::test_forward[eager-64]"]


@pytest.mark.slow
def test_a_nan_backend_fails_equivalence_with_count_and_index(pytester: pytest.Pytester) -> None:
    result = _run_with_backends(
        pytester,
        """
        from pytest_attnperf import register_backend

        @register_backend("poisoned", description="one NaN")
        def poisoned(q, k, v, shape):
            output = q.clone()
            output[0, 1, 2, 3] = float("nan")
            return output
    """,
        "poisoned",
    )
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines(
        [
            r"numerical mismatch in test_equivalence\.py::test_forward\[poisoned-64\]: 1 of 2048 output elements are NaN "
            r"or Inf \(first at index \(0, 1, 2, 3\)\)",
        ]
    )
    assert "not JSON compliant" not in result.stdout.str()


def test_a_case_faster_than_its_baseline_by_more_than_its_tolerance_is_told_to_record_again() -> None:
    """A one-sided gate passes a 40 % speed-up silently, and a later slowdown back to the old baseline would pass
    too: the verdict says the baseline no longer holds the case."""
    outcome, _ = evaluate_gate(_result(median_ms=0.6), LATENCY, _entry(), _policy(), CONTEXT)
    assert outcome.violations == ()
    said = [note for note in outcome.notes if note.startswith("faster than its baseline")]
    assert len(said) == 1
    assert "x0.600" in said[0]
    assert "`attnperf update`" in said[0]
    assert outcome.warnings == ()
    within, _ = evaluate_gate(_result(median_ms=0.99), LATENCY, _entry(), _policy(), CONTEXT)
    assert not any(note.startswith("faster") for note in within.notes)
