"""attnperf.measure refuses a bad mode before running anything, and a backend that writes to its inputs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from fast_run import CPU, FAST_OPTIONS

from pytest_attnperf.backends.registry import Backend
from pytest_attnperf.gate.results import CaseRecord
from pytest_attnperf.measure.input_guard import InputGuard, bits_checksum
from pytest_attnperf.measure.inputs import make_qkv
from pytest_attnperf.measure.reference import eager_attention
from pytest_attnperf.session.case_runner import AttnPerf, ReferenceCache
from pytest_attnperf.spec.options import TimingConfig
from pytest_attnperf.spec.shapes import AttnShape

SHAPE = AttnShape(q_len=32, k_len=32, batch=1, heads=2, kv_heads=2, head_dim=16, dtype="float32")
QUICK = TimingConfig(
    warmup_ms=1.0, rep_ms=2.0, min_samples=3
)  # 3: the fewest a median is kept from, however slow the CPU


class KeepingGate:
    """Decides nothing: keeps what it was given."""

    fingerprint = False

    def __init__(self) -> None:
        self.results: list[CaseRecord] = []

    def again(self, result: CaseRecord) -> CaseRecord | None:
        return None  # this measurement decides

    def finish(self, result: CaseRecord, on_final: Callable[[], None] | None) -> CaseRecord:
        if on_final is not None:
            on_final()
        self.results.append(result)
        return result  # the runner hands the test the record its gate returns

    def calibration(self) -> None:
        return None

    def power_window(self, median_ms: float) -> str | None:
        return "not asked for"


def _runner(input_guard: InputGuard | None = None) -> AttnPerf:
    """A runner with caches of its own, or the ``input_guard`` a run hands each of its cases."""
    return AttnPerf(
        test_id="t.py::test[x]",
        device=torch.device("cpu"),
        info=CPU,
        timing=QUICK,
        mode="forward",
        equivalence=None,
        gate=KeepingGate(),
        references=ReferenceCache(),
        input_guard=input_guard or InputGuard(),
    )


def _correct(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    return eager_attention(q, k, v, causal=shape.causal, window=shape.window, scale=shape.scale)


def test_a_bad_mode_is_refused_before_anything_runs() -> None:
    # measure(mode="fwd") used to run a forward+backward workload, then die with a bare KeyError: 'fwd'.
    calls: list[int] = []

    def counting(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
        calls.append(1)
        return _correct(q, k, v, shape)

    with pytest.raises(ValueError, match=r"^mode 'fwd' is not one of: forward, backward, forward\+backward$"):
        _runner().measure(Backend("counting", counting), make_qkv(SHAPE), mode="fwd")  # type: ignore[arg-type]
    assert calls == []


@pytest.mark.parametrize("flops", [math.nan, math.inf, -1.0, 0, "many", True])
def test_bad_flops_are_refused_naming_them(flops: Any) -> None:
    # flops=nan used to reach the strict-JSON record: "Out of range float values are not JSON compliant".
    with pytest.raises(
        ValueError, match=r"^measure_workload\(name='w'\): flops must be a positive finite number or None"
    ):
        _runner().measure_workload(lambda: None, name="w", flops=flops)


def test_a_backward_of_a_backend_returning_none_names_it() -> None:
    # It used to fail inside the workload builder with AttributeError: 'NoneType' object has no attribute 'shape'.
    def returns_none(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> None:
        _correct(q, k, v, shape)

    with pytest.raises(TypeError, match=r"^attention backend 'none' returned NoneType, expected a torch\.Tensor$"):
        _runner().measure(Backend("none", returns_none), make_qkv(SHAPE), mode="backward")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["backward", "forward+backward"])
def test_an_out_of_memory_while_building_the_backward_graph_does_not_fit(mode: Any) -> None:
    # The graph's forward runs before measure() does: under `ulimit -v` it used to fail the test with the raw
    # "DefaultCPUAllocator: can't allocate memory" RuntimeError.
    def too_big(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
        return torch.empty(1 << 62, dtype=torch.uint8)

    result = _runner().measure(Backend("too-big", too_big), make_qkv(SHAPE), mode=mode)
    assert result.measurement.fits is False
    assert result.measurement.reason is not None
    assert "DefaultCPUAllocator: can't allocate memory" in result.measurement.reason


def test_the_checksum_sees_any_bit() -> None:
    tensor = torch.zeros(4, dtype=torch.float16)
    before = bits_checksum(tensor)
    tensor.view(torch.int16)[2] = 1  # the smallest subnormal: a change of one bit
    assert bits_checksum(tensor) != before


def _plus_one_on_v(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    v.add_(1.0)
    return _correct(q, k, v, shape)


def _raw_write_on_q(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    q.data[0, 0, 0, 0] = 7.0  # through .data: no version bump, as a kernel writing through a pointer
    return _correct(q, k, v, shape)


@pytest.mark.parametrize(
    ("run", "layout", "named"),
    [
        (_plus_one_on_v, "bhsd", "v"),
        (_raw_write_on_q, "bhsd", "q"),
        (_plus_one_on_v, "bshd", "v (its bshd copy)"),
    ],
)
def test_a_backend_writing_to_its_inputs_fails_and_the_inputs_are_restored(run: Any, layout: Any, named: str) -> None:
    qkv = make_qkv(SHAPE)
    pristine = [tensor.clone() for tensor in (qkv.q, qkv.k, qkv.v)]
    with pytest.raises(pytest.fail.Exception) as failure:
        _runner().measure(Backend("writer", run, layout=layout), qkv)
    assert str(failure.value) == (
        f"t.py::test[x]: attention backend 'writer' modified its input(s) {named} in place: its timings and its "
        "output check ran on changing values. A backend must not write to q, k or v (work on a copy); the inputs "
        "were restored for the tests after it"
    )
    assert all(torch.equal(now, then) for now, then in zip((qkv.q, qkv.k, qkv.v), pristine, strict=True))


def test_a_backend_that_leaves_its_inputs_alone_passes_the_guard() -> None:
    qkv = make_qkv(SHAPE)
    runner = _runner()
    result = runner.measure(Backend("correct", _correct, layout="bshd"), qkv)
    assert result.measurement.median_ms is not None
    assert runner.input_guard.modified(qkv, "bshd") == []


def test_inputs_changed_by_a_backend_that_then_raised_are_restored_for_the_next() -> None:
    qkv = make_qkv(SHAPE)
    pristine_v = qkv.v.clone()
    seen: list[torch.Tensor] = []

    def writes_then_raises(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
        v.mul_(3.0)
        raise RuntimeError("boom after writing")

    def records(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
        seen.append(v.clone())
        return _correct(q, k, v, shape)

    run_guard = InputGuard()  # one per run, handed to every case (the session's)
    with pytest.raises(RuntimeError, match="boom after writing"):
        _runner(run_guard).measure(Backend("writer", writes_then_raises), qkv)
    _runner(run_guard).measure(Backend("next", records), qkv)
    assert all(torch.equal(v, pristine_v) for v in seen)


INPLACE_CONFTEST = """
from pytest_attnperf import register_backend
from pytest_attnperf.measure.reference import eager_attention


@register_backend("inplace")
def inplace(q, k, v, shape):
    v.add_(1.0)  # modifies its input on every call
    return eager_attention(q, k, v, causal=shape.causal, window=shape.window, scale=shape.scale)
"""
INPLACE_TEST = """
import pytest

@pytest.mark.attnperf_equivalence
def test_forward(attnperf, attn_backend, qkv):
    attnperf.measure(attn_backend, qkv)
"""


@pytest.mark.slow
def test_the_backend_after_an_inplace_one_sees_the_seeded_inputs(pytester: pytest.Pytester) -> None:
    # Both used to pass: the in-place backend was checked against a reference of its own modified v, and the
    # cached inputs it modified went on to the next backend.
    pytester.makeconftest(INPLACE_CONFTEST)
    pytester.makepyfile(test_inputs=INPLACE_TEST)
    options = [option for option in FAST_OPTIONS if not option.startswith("--attnperf-backends")]
    result = pytester.runpytest_subprocess("--attnperf", *options, "--attnperf-backends=inplace,eager", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_forward[[]inplace-64[]] FAILED*",
            "*test_forward[[]eager-64[]] PASSED*",
            "*attention backend 'inplace' modified its input(s) v in place*",
        ]
    )


def test_the_runner_asks_its_gate_whether_to_measure_the_power_window(monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_attnperf.session.case_runner as runner

    asked: list[Any] = []
    measure_case = runner.measure_case

    def spying(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("power_skip"))
        return measure_case(*args, **kwargs)

    monkeypatch.setattr(runner, "measure_case", spying)
    attnperf = _runner()
    attnperf.measure_workload(lambda: torch.ones(4) * 2, name="tiny")
    assert asked == [attnperf.gate.power_window]  # the gate decides, from the median the measurement finds
