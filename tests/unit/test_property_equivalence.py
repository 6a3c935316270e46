"""Property: on random shapes, every backend this CPU can run agrees with the reference, or is skipped with a reason.

The rule is the project's (FACTS §3, ``checks.measure_equivalence`` with ``EquivalenceSpec()``): the output
is within 2x the error of the same reference run in the input dtype, against a float64 reference for
float32 inputs and a float32 one for bfloat16, as ``session.case_runner.ReferenceCache.get`` builds them. A query row
that sees no key (causal with q_len > k_len, or a sliding window past the keys) must be exactly zero,
FlashAttention's convention. The same property runs on a GPU, with many more shapes and every CUDA
backend, in benchmarks/property_gpu.py.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from pytest_attnperf.backends.registry import REGISTRY, Backend, Unsupported
from pytest_attnperf.measure.device import describe_device
from pytest_attnperf.measure.equivalence import describe_mismatch, measure_equivalence
from pytest_attnperf.measure.inputs import QKV, make_qkv, torch_dtype
from pytest_attnperf.measure.reference import band_mask, reference_attention
from pytest_attnperf.session.case_runner import ReferenceCache, make_workload
from pytest_attnperf.spec.marks import EquivalenceSpec
from pytest_attnperf.spec.shapes import AttnShape

CPU_DEVICE = torch.device("cpu")
CPU = describe_device(CPU_DEVICE)
# flex runs torch.compile for every new shape, about 4 s each on a CPU: a property drawing a hundred
# shapes would take minutes. It is checked here on the fixed no-key cases below (one compile each) and
# on hundreds of random shapes on a GPU by benchmarks/property_gpu.py.
COMPILES_PER_SHAPE = frozenset({"flex"})
# FINDING (kept by test_the_fa2_rule_passes_correct_fp32_kernels): with float32 inputs the
# input-dtype reference is as precise as the kernels it judges, so "within 2x its error" compares two
# equally rounded results, and on small problems or large softmax scales correct kernels exceed it: on this
# CPU 109 of 6,000 checks (sdpa-math up to 16x, sdpa-flash up to 4x; 3,000 random fp32 shapes), on an H100
# 26 of sdpa-efficient's fp32 runs; the errors stay under 1e-4. checks.measure_equivalence now floors an
# fp32 budget at 2 x 2**-16 x max|ref|; a real fp32 bug (a wrong mask, scale or accumulation, or TF32
# matmuls) is off by 1e-3 or more and still fails.
FP32_RULE_NOISE = 1e-4


def cpu_backends(*, include_compiled: bool) -> list[Backend]:
    """Every registered backend that can run on this CPU at all."""
    return [
        backend
        for backend in REGISTRY
        if backend.unavailable_reason(CPU) is None and (include_compiled or backend.name not in COMPILES_PER_SHAPE)
    ]


@st.composite
def attention_shapes(draw: st.DrawFn, dtypes: tuple[str, ...] = ("float32", "bfloat16")) -> AttnShape:
    """Small shapes with every feature: GQA, odd and unequal lengths, causal, windows, a custom scale."""
    heads = draw(st.integers(1, 4))
    no_window = st.just((-1, -1))
    window = st.tuples(st.integers(-1, 16), st.integers(-1, 16))
    return AttnShape(
        q_len=draw(st.integers(1, 96)),
        k_len=draw(st.integers(1, 96)),
        batch=draw(st.integers(1, 2)),
        heads=heads,
        kv_heads=draw(st.sampled_from([count for count in range(1, heads + 1) if heads % count == 0])),
        head_dim=draw(st.sampled_from([8, 16, 32, 64])),
        dtype=draw(st.sampled_from(dtypes)),
        causal=draw(st.booleans()),
        window=draw(st.one_of(no_window, window)),
        scale=draw(st.one_of(st.none(), st.floats(min_value=0.01, max_value=4.0))),
    )


def references(qkv: QKV) -> tuple[torch.Tensor, torch.Tensor]:
    """(high-precision reference, input-dtype reference), built as session.case_runner.ReferenceCache.get builds them."""
    shape = qkv.shape
    high = torch.float64 if torch_dtype(shape.dtype) == torch.float32 else torch.float32
    return tuple(  # type: ignore[return-value]
        reference_attention(
            qkv.q, qkv.k, qkv.v, causal=shape.causal, window=shape.window, scale=shape.scale, compute_dtype=dtype
        )
        for dtype in (high, torch_dtype(shape.dtype))
    )


def rows_without_keys(shape: AttnShape, device: torch.device = CPU_DEVICE) -> torch.Tensor:
    """Boolean (q_len,): the query rows that may attend to no key at all."""
    allowed = band_mask(shape.q_len, shape.k_len, causal=shape.causal, window=shape.window, device=device)
    if allowed is None:
        return torch.zeros(shape.q_len, dtype=torch.bool, device=device)
    return ~allowed.any(dim=-1)


def forward(backend: Backend, qkv: QKV) -> torch.Tensor:
    """One forward exactly as the plugin runs it, returned in (batch, heads, seqlen, head_dim)."""
    output: torch.Tensor = make_workload(backend, qkv, "forward")()
    return output.transpose(1, 2) if backend.layout == "bshd" else output


def check_backend(backend: Backend, qkv: QKV, reference: torch.Tensor, low: torch.Tensor) -> str | None:
    """Assert ``backend`` agrees with the reference on ``qkv``; return the skip reason when it cannot run it."""
    shape = qkv.shape
    reason = backend.unsupported_reason(shape, CPU)
    if reason is not None:
        return reason
    try:
        output = forward(backend, qkv)
    except Unsupported as unsupported:  # a pinned SDPA kernel refusing the case, as the plugin skips it
        return str(unsupported)
    equivalence = measure_equivalence(output, reference, low, EquivalenceSpec())
    assert equivalence.passed, f"{backend.name} on {shape}: {describe_mismatch(equivalence)}"
    empty = rows_without_keys(shape, output.device)
    assert int(output[:, :, empty].count_nonzero()) == 0, (
        f"{backend.name} on {shape}: rows {empty.nonzero().flatten().tolist()} see no key and must be zero, "
        f"found {output[:, :, empty].flatten()[:4].tolist()}..."
    )
    return None


PROPERTY_SETTINGS = settings(
    max_examples=500,
    deadline=None,
    # The same shapes every run; ATTNPERF_EXPLORE=1 draws new ones (and may find the known tiny-output
    # case of docs/reliability.md, where the fa2 rule itself is a weak yardstick).
    derandomize=os.environ.get("ATTNPERF_EXPLORE") != "1",
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(shape=attention_shapes(), seed=st.integers(0, 2**16))
def test_every_cpu_backend_agrees_with_the_reference_or_skips_with_a_reason(shape: AttnShape, seed: int) -> None:
    qkv = make_qkv(shape, seed=seed, device=CPU_DEVICE)
    reference, low = references(qkv)
    empty = rows_without_keys(shape)
    event(f"rows without keys: {'some' if bool(empty.any()) else 'none'}")
    # The reference itself follows FlashAttention's convention for rows that see no key.
    assert int(reference[:, :, empty].count_nonzero()) == 0
    assert int(low[:, :, empty].count_nonzero()) == 0
    ran = []
    for backend in cpu_backends(include_compiled=False):
        reason = check_backend(backend, qkv, reference, low)
        if reason is None:
            ran.append(backend.name)
            event(f"{backend.name}: agrees")
        else:
            note(f"{backend.name} skipped: {reason}")
            event(f"{backend.name}: skipped ({reason.split(':')[0]})")
    assert "eager" in ran  # materialised attention takes every shape: each example checks at least one backend


def test_the_references_are_the_ones_the_plugin_uses() -> None:
    shape = AttnShape(q_len=33, k_len=17, heads=4, kv_heads=2, head_dim=16, dtype="bfloat16", window=(5, 2))
    qkv = make_qkv(shape, seed=3)
    for mine, plugins in zip(references(qkv), ReferenceCache().get(qkv), strict=True):
        assert mine.dtype == plugins.dtype
        assert torch.equal(mine, plugins)


NO_KEY_CASES = {
    "causal-q-longer-than-k": AttnShape(q_len=24, k_len=9, heads=2, kv_heads=1, head_dim=16, dtype="float32"),
    "window-before-the-keys": AttnShape(
        q_len=30, k_len=10, heads=2, kv_heads=2, head_dim=16, dtype="bfloat16", causal=False, window=(3, 1)
    ),
}


@pytest.mark.parametrize("case", NO_KEY_CASES.values(), ids=NO_KEY_CASES.keys())
@pytest.mark.parametrize(
    "backend",
    [  # a backend that compiles per shape takes seconds a case: the slow part of the suite runs it
        pytest.param(backend, id=backend.name, marks=[pytest.mark.slow] if backend.name in COMPILES_PER_SHAPE else [])
        for backend in cpu_backends(include_compiled=True)
    ],
)
def test_rows_that_see_no_key_are_zero_in_every_backend(backend: Backend, case: AttnShape) -> None:
    empty = rows_without_keys(case)
    assert int(empty.sum()) > 0  # the case really has such rows
    qkv = make_qkv(case, seed=0)
    reference, low = references(qkv)
    assert int(reference[:, :, empty].count_nonzero()) == 0
    reason = check_backend(backend, qkv, reference, low)
    if reason is not None:
        pytest.skip(reason)


# Found by the property above (seeds and shapes as Hypothesis reported them); max |out - ref| / the fp32
# reference's own error: 15.9, 12.5, 3.8 and 4.1 (the last with the default scale).
FP32_FALSE_ALARMS: dict[str, tuple[str, AttnShape, int]] = {
    "sdpa-math-window": (
        "sdpa-math",
        AttnShape(q_len=46, k_len=28, heads=1, kv_heads=1, head_dim=32, dtype="float32", window=(8, 3), scale=3.8613),
        11032,
    ),
    "sdpa-math-2x2": (
        "sdpa-math",
        AttnShape(q_len=2, k_len=2, heads=3, kv_heads=3, head_dim=32, dtype="float32", causal=False, scale=3.3864),
        51300,
    ),
    "sdpa-flash-2x2": (
        "sdpa-flash",
        AttnShape(q_len=2, k_len=2, heads=3, kv_heads=3, head_dim=32, dtype="float32", causal=False, scale=3.3864),
        51300,
    ),
    "sdpa-math-default-scale": (
        "sdpa-math",
        AttnShape(q_len=69, k_len=2, heads=4, kv_heads=4, head_dim=8, dtype="float32", window=(15, 0)),
        10354,
    ),
}


def _fp32_equivalence(backend: str, shape: AttnShape, seed: int) -> tuple[float, float, bool]:
    qkv = make_qkv(shape, seed=seed)
    reference, low = references(qkv)
    equivalence = measure_equivalence(forward(REGISTRY.get(backend), qkv), reference, low, EquivalenceSpec())
    return equivalence.max_error, equivalence.reference_error, equivalence.passed


@pytest.mark.parametrize(("backend", "shape", "seed"), FP32_FALSE_ALARMS.values(), ids=FP32_FALSE_ALARMS.keys())
def test_the_fp32_false_alarms_are_correct_outputs(backend: str, shape: AttnShape, seed: int) -> None:
    max_error, reference_error, _ = _fp32_equivalence(backend, shape, seed)
    assert max_error <= FP32_RULE_NOISE  # a few dozen fp32 ulps: these kernels are right
    assert reference_error > 0


def test_the_fa2_rule_passes_correct_fp32_kernels() -> None:
    # One test over all four: it passes only when the rule accepts every one of them, so a CPU whose
    # kernels happen to round one case differently cannot turn this into an unexpected pass.
    verdicts = {name: _fp32_equivalence(*case)[2] for name, case in FP32_FALSE_ALARMS.items()}
    assert verdicts == dict.fromkeys(verdicts, True)
