"""The pytest side: off by default, skips with reasons, pytest-benchmark output, and the backend registry."""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from fast_run import CPU, FAST_OPTIONS

from pytest_attnperf import REGISTRY, Backend, BackendError, register_backend
from pytest_attnperf.backends.registry import ENTRY_POINT_GROUP, BackendRegistry
from pytest_attnperf.fixtures import BENCHMARK_FIXTURES
from pytest_attnperf.gate.baselines import BaselineEntry, baseline_path, merge_entries
from pytest_attnperf.plugin import SKIP_REASON
from pytest_attnperf.session.report import skip_reason_lines
from pytest_attnperf.spec.shapes import AttnShape

FAST = FAST_OPTIONS
MEASURING_TEST = """
    import pytest

    @pytest.mark.attnperf_latency()
    def test_forward(attnperf, attn_backend, qkv):
        attnperf.measure(attn_backend, qkv)
"""


# ---------------------------------------------------------------- off by default


def test_without_attnperf_only_the_benchmarks_are_skipped(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mixed="""
        import pytest

        def test_ordinary():
            pass

        @pytest.mark.attnperf_latency(budget="1 s")
        def test_marker_only():
            pass

        @pytest.mark.attnperf_memory(ceiling="1 GiB")
        def test_memory_marker_only():
            pass

        @pytest.mark.attnperf_equivalence()
        def test_equivalence_marker_only():
            pass

        def test_attnperf_fixture(attnperf):
            pass

        def test_backend_fixture(attn_backend):
            pass

        def test_qkv_fixture(qkv):
            pass

        @pytest.mark.attnperf_shape(heads=4)
        def test_shape_mark_alone_is_not_a_benchmark():
            pass
    """
    )
    reprec = pytester.inline_run(*FAST)
    passed, skipped, failed = reprec.listoutcomes()
    assert failed == []
    assert sorted(report.nodeid.split("::")[1] for report in passed) == [
        "test_ordinary",
        "test_shape_mark_alone_is_not_a_benchmark",
    ]
    assert sorted(report.nodeid.split("::")[1] for report in skipped) == [
        "test_attnperf_fixture",
        "test_backend_fixture[eager]",
        "test_equivalence_marker_only",
        "test_marker_only",
        "test_memory_marker_only",
        "test_qkv_fixture[64]",
    ]
    for report in skipped:
        assert isinstance(report.longrepr, tuple)
        assert report.longrepr[2] == f"Skipped: {SKIP_REASON}"
    assert SKIP_REASON == "attention benchmark: runs only with --attnperf"
    assert {"attnperf", "attn_backend", "qkv"} <= BENCHMARK_FIXTURES


def test_without_attnperf_nothing_is_measured_or_printed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=MEASURING_TEST)
    result = pytester.runpytest_inprocess(*FAST)
    result.assert_outcomes(skipped=1)
    assert "attnperf:" not in result.stdout.str()
    assert not (pytester.path / "baselines").exists()


def test_with_attnperf_the_header_names_device_and_baseline_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=MEASURING_TEST)
    result = pytester.runpytest_inprocess(*FAST, "--attnperf")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines(
        [
            rf"attnperf: the CPU, {re.escape(CPU.name)} \(no GPU in this run\); torch {re.escape(torch.__version__)}.*",
            rf"attnperf: baselines baselines/{re.escape(CPU.slug)}\.yaml \(no baseline file for this CPU yet\)",
        ]
    )
    result.stdout.re_match_lines(
        [
            rf"=+ attnperf: {re.escape(CPU.name)} \(.+\) =+",
            r"test\s+backend\s+len\s+median\s+TFLOP/s\s+GB/s\s+peak mem\s+baseline\s+ratio\s+at clock\s+verdict",
            r"test_forward\[eager-64\]\s+eager\s+64\s+[0-9.]+ (us|ms)\s+.*no baseline",
        ]
    )


def test_the_header_of_a_cpu_run_says_cpu_not_gpu(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=MEASURING_TEST)
    result = pytester.runpytest_inprocess(*FAST, "--attnperf")
    header = [line for line in result.stdout.lines if line.startswith("attnperf:")]
    assert header, result.stdout.str()
    assert not any("GPU yet" in line or "(cpu, CPU)" in line for line in header), header


def test_skipped_cases_are_summed_up_by_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_gate=MEASURING_TEST,
        test_other="""
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_unrelated(n):
            pytest.skip("no network here")
        """,
    )
    result = pytester.runpytest_inprocess(*FAST, "--attnperf", "--attnperf-backends=eager,sdpa-cudnn")
    result.assert_outcomes(passed=1, skipped=4)
    result.stdout.re_match_lines([r"=+ attnperf: 4 skipped, by reason =+", r"\s+3 no network here$", r"\s+1 \S.*"])
    cudnn_line = result.stdout.lines[result.stdout.lines.index("    3 no network here") + 1]
    assert "cudnn" in cudnn_line.lower() or "cuda" in cudnn_line.lower(), cudnn_line


def test_skip_reason_lines_count_and_cap() -> None:
    reasons = ["a"] * 3 + ["b"] + [f"other {n}" for n in range(4)]
    assert skip_reason_lines(reasons, limit=2) == [
        "    3 a",
        "    1 b",
        "    4 for 4 other reasons (pytest -rs lists each test)",
    ]
    assert skip_reason_lines([]) == []


def test_a_marked_test_that_measures_nothing_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_idle="""
        import pytest

        @pytest.mark.attnperf_latency()
        def test_forgot(attnperf, attn_backend, qkv):
            pass
    """
    )
    result = pytester.runpytest_inprocess(*FAST, "--attnperf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_idle.py::test_forgot[[]eager-64[]] has attnperf check marks but measured nothing: request the "
            "`attnperf` fixture and call attnperf.measure(attn_backend, qkv)*",
        ]
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only skip reasons")
def test_a_gpu_only_backend_is_skipped_with_its_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=MEASURING_TEST)
    arguments = [arg for arg in FAST if not arg.startswith("--attnperf-backends")]
    reprec = pytester.inline_run(*arguments, "--attnperf", "--attnperf-backends=flash-attn,sdpa-cudnn")
    passed, skipped, failed = reprec.listoutcomes()
    assert (passed, failed) == ([], [])
    reasons = {report.nodeid.split("[")[1]: report.longrepr[2] for report in skipped}  # type: ignore[index]
    assert reasons == {
        "flash-attn-64]": f"Skipped: flash-attn needs a cuda device; this run is on {CPU.name} (cpu)",
        "sdpa-cudnn-64]": f"Skipped: sdpa-cudnn needs a cuda device; this run is on {CPU.name} (cpu)",
    }


# ---------------------------------------------------------------- pytest-benchmark


BENCHMARK_ARGS = (*FAST, "--attnperf", "--benchmark-json=bench.json", "--attnperf-json=attnperf.json")


def test_benchmark_json_carries_our_samples(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=MEASURING_TEST)
    result = pytester.runpytest_inprocess(*BENCHMARK_ARGS)
    result.assert_outcomes(passed=1)
    benchmarks = json.loads((pytester.path / "bench.json").read_text(encoding="utf-8"))["benchmarks"]
    ours = json.loads((pytester.path / "attnperf.json").read_text(encoding="utf-8"))
    assert ours["schema"] == "attnperf-results/2"
    (case,) = ours["results"]
    (entry,) = benchmarks
    assert entry["fullname"] == "test_gate.py::test_forward[eager-64]" == case["test_id"]
    assert entry["extra_info"]["attnperf_clock"] == "perf_counter" == case["clock"]
    assert entry["extra_info"]["attnperf_backend"] == "eager"
    assert entry["extra_info"]["attnperf_peak_bytes"] == case["peak_bytes"]
    # pytest-benchmark's own timer never ran: its statistics are our samples, in seconds.
    assert entry["stats"]["rounds"] == case["latency"]["samples"]
    assert entry["stats"]["median"] * 1e3 == pytest.approx(case["median_ms"], rel=1e-9)
    assert entry["stats"]["min"] * 1e3 == pytest.approx(case["latency"]["min"], rel=1e-9)
    assert entry["stats"]["max"] * 1e3 == pytest.approx(case["latency"]["max"], rel=1e-9)


def test_benchmark_output_does_not_warn_that_the_fixture_was_unused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=MEASURING_TEST)
    result = pytester.runpytest_inprocess(*BENCHMARK_ARGS)
    result.assert_outcomes(passed=1)
    assert "Benchmark fixture was not used at all" not in result.stdout.str()


def _tiny_baseline(pytester: pytest.Pytester, test_id: str) -> None:
    """A baseline no CPU can meet: the first measurement is far over the line."""
    path = baseline_path(pytester.path / "baselines", CPU.slug)
    entry = BaselineEntry(
        backend="eager",
        shape=None,
        mode="forward",
        latency_ms={"median": 1e-6},
        peak_bytes=1,
        fits=True,
        recorded_at="",
        environment={},
    )
    merge_entries(path, {"name": CPU.name, "slug": CPU.slug}, {}, {test_id: entry})


def test_a_clear_regression_fails_at_once_in_its_own_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=MEASURING_TEST)
    _tiny_baseline(pytester, "test_gate.py::test_forward[eager-64]")
    result = pytester.runpytest_inprocess(*BENCHMARK_ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*far over the line at the first measurement*"])
    (case,) = json.loads((pytester.path / "attnperf.json").read_text(encoding="utf-8"))["results"]
    assert case["first_median_ms"] is None
    assert [stage["verdict"] for stage in case["stages"]] == ["regression"]
    assert case["verdict"] == "REGRESSION"
    benchmarks = json.loads((pytester.path / "bench.json").read_text(encoding="utf-8"))["benchmarks"]
    assert [entry["fullname"] for entry in benchmarks] == ["test_gate.py::test_forward[eager-64]"]
    assert benchmarks[0]["stats"]["median"] * 1e3 == pytest.approx(case["median_ms"], rel=1e-9)


# ---------------------------------------------------------------- the backend registry


def first(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    return q


def second(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: AttnShape) -> torch.Tensor:
    return v


def _origin(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def test_entry_point_group_name() -> None:
    assert ENTRY_POINT_GROUP == "pytest_attnperf.backends"


def test_duplicate_registration_names_both_origins() -> None:
    registry = BackendRegistry()
    registry.register(Backend("mine", first))
    with pytest.raises(BackendError) as error:
        registry.register(Backend("mine", second))
    assert str(error.value) == (
        f"duplicate attention backend 'mine': already registered by {_origin(first)}, registered again by "
        f"{_origin(second)}; pick another name"
    )
    assert registry.get("mine").run is first  # the first one stays


def test_duplicate_through_the_decorator() -> None:
    registry = BackendRegistry()
    assert register_backend("mine", registry=registry, description="one")(first) is first
    with pytest.raises(BackendError, match=re.escape(_origin(second))):
        register_backend("mine", registry=registry)(second)


def test_registering_the_same_backend_twice_is_harmless() -> None:
    registry = BackendRegistry()
    backend = Backend("mine", first)
    registry.register(backend)
    registry.register(backend)
    assert registry.names() == ("mine",)


def test_a_builtin_name_cannot_be_taken() -> None:
    with pytest.raises(BackendError, match="duplicate attention backend 'eager': already registered by "):
        REGISTRY.register(Backend("eager", first))
    assert REGISTRY.get("eager").run is not first


@pytest.mark.parametrize("name", ["", " eager", "eager ", "a,b"])
def test_invalid_backend_names_are_refused(name: str) -> None:
    with pytest.raises(BackendError, match="use a non-empty name without commas or spaces"):
        BackendRegistry().register(Backend(name, first))


def test_a_name_with_an_inner_space_is_refused() -> None:
    with pytest.raises(BackendError, match="without commas or spaces"):
        BackendRegistry().register(Backend("my kernel", first))


def test_an_unknown_layout_is_refused_at_registration() -> None:
    # layout="bsdh" was accepted; the test then failed on an output shape, never naming the layout.
    with pytest.raises(BackendError) as error:
        BackendRegistry().register(Backend("my-kernel", first, layout="bsdh"))  # type: ignore[arg-type]
    assert str(error.value) == (
        "backend 'my-kernel': unknown layout 'bsdh'; expected 'bhsd' (batch, heads, seqlen, head_dim) or 'bshd' "
        "(batch, seqlen, heads, head_dim)"
    )


def test_unknown_backend_lists_the_known_ones() -> None:
    registry = BackendRegistry()
    registry.register(Backend("alpha", first))
    registry.register(Backend("beta", second))
    with pytest.raises(BackendError) as error:
        registry.select(("beta", "gamma"))
    assert str(error.value) == "unknown attention backend 'gamma'; expected one of: alpha, beta"
    assert [backend.name for backend in registry.select(("beta", "alpha"))] == ["beta", "alpha"]


@dataclass
class FakeEntryPoint:
    name: str
    provided: object

    def load(self) -> object:
        return self.provided


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, *entry_points: FakeEntryPoint) -> list[str]:
    groups: list[str] = []

    def fake(*, group: str) -> tuple[FakeEntryPoint, ...]:
        groups.append(group)
        return entry_points

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    return groups


@pytest.mark.parametrize(
    "provided",
    [Backend("ext", first), [Backend("ext", first)], lambda: Backend("ext", first), lambda: (Backend("ext", first),)],
    ids=["backend", "list", "factory", "factory-of-tuple"],
)
def test_entry_point_backends_are_loaded_once(monkeypatch: pytest.MonkeyPatch, provided: object) -> None:
    groups = _with_entry_points(monkeypatch, FakeEntryPoint("ext", provided))
    registry = BackendRegistry()
    assert registry.names() == ("ext",)
    assert registry.get("ext").run is first
    assert groups == [ENTRY_POINT_GROUP]


def test_an_entry_point_giving_something_else_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_entry_points(monkeypatch, FakeEntryPoint("broken", 42))
    with pytest.raises(BackendError) as error:
        BackendRegistry().names()
    assert str(error.value) == (
        "entry point 'broken' in group 'pytest_attnperf.backends' gave 42; expected a pytest_attnperf.Backend, "
        "a list of them, or a function returning them"
    )


def test_an_entry_point_cannot_shadow_a_registered_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_entry_points(monkeypatch, FakeEntryPoint("ext", Backend("mine", second)))
    registry = BackendRegistry()
    registry.register(Backend("mine", first))
    with pytest.raises(
        BackendError,
        match=f"already registered by {re.escape(_origin(first))}, registered again by {re.escape(_origin(second))}",
    ):
        registry.names()


# ---------------------------------------------------------------- what a backend declares


def test_unavailable_and_unsupported_reasons() -> None:
    cuda_only = Backend("gpu-kernel", first, devices=frozenset({"cuda"}))
    assert cuda_only.unavailable_reason(CPU) == f"gpu-kernel needs a cuda device; this run is on {CPU.name} (cpu)"
    needs_module = Backend("ext", first, requires=("no_such_module_for_attnperf",), install_hint="pip install ext")
    assert needs_module.unavailable_reason(CPU) == (
        "ext needs the Python module 'no_such_module_for_attnperf', which is not installed (pip install ext)"
    )
    picky = Backend(
        "picky",
        first,
        dtypes=frozenset({"float16"}),
        max_head_dim=128,
        head_dim_multiple=8,
        supports_window=False,
        supports_gqa=False,
    )
    cases = {
        AttnShape(q_len=8, k_len=8, dtype="float32"): "picky does not take float32; it takes float16",
        AttnShape(q_len=8, k_len=8, head_dim=256): "picky takes head_dim up to 128, not 256",
        AttnShape(q_len=8, k_len=8, head_dim=60): "picky needs head_dim a multiple of 8, not 60",
        AttnShape(q_len=8, k_len=8, window=(4, 0)): "picky has no sliding-window attention (window=(4, 0))",
        AttnShape(q_len=8, k_len=8, heads=8, kv_heads=2): "picky has no grouped-query attention (kv_heads=2, heads=8)",
        AttnShape(q_len=8, k_len=8): None,
    }
    for shape, reason in cases.items():
        assert picky.unsupported_reason(shape, CPU) == reason
