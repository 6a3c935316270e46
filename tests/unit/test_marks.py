"""The markers: their signatures are their API; a bad argument is an error at collection naming the test."""

from __future__ import annotations

import inspect
import re

import pytest
from fast_run import FAST_OPTIONS

from pytest_attnperf.backends.registry import REGISTRY
from pytest_attnperf.spec.marks import (
    MARKER_HELP,
    MARKER_USAGE,
    MARKERS,
    EquivalenceSpec,
    LatencySpec,
    MarkerError,
    MemorySpec,
    ShapeSpec,
    attnperf_backends,
    attnperf_equivalence,
    attnperf_latency,
    attnperf_memory,
    attnperf_shape,
    evaluate_marker,
    variant_id,
)

FAST = FAST_OPTIONS


# ---------------------------------------------------------------- the marker functions


def test_the_five_markers_and_their_keyword_only_tuning() -> None:
    assert (
        set(MARKERS)
        == set(MARKER_USAGE)
        == set(MARKER_HELP)
        == {
            "attnperf_latency",
            "attnperf_memory",
            "attnperf_equivalence",
            "attnperf_backends",
            "attnperf_shape",
        }
    )
    for name in ("attnperf_latency", "attnperf_memory", "attnperf_equivalence", "attnperf_shape"):
        parameters = inspect.signature(MARKERS[name]).parameters.values()
        assert all(parameter.kind is inspect.Parameter.KEYWORD_ONLY for parameter in parameters), name
    assert list(inspect.signature(attnperf_latency).parameters) == ["tolerance", "budget", "baseline", "cuda_graph"]
    assert list(inspect.signature(attnperf_memory).parameters) == ["tolerance", "ceiling", "baseline"]
    assert list(inspect.signature(attnperf_equivalence).parameters) == ["rule", "factor", "rtol", "atol"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, LatencySpec(tolerance=None, budget_ms=None, use_baseline=True)),
        ({"tolerance": "10%"}, LatencySpec(tolerance=0.1)),
        ({"tolerance": 0.25}, LatencySpec(tolerance=0.25)),
        ({"budget": "250 us"}, LatencySpec(budget_ms=0.25)),
        ({"budget": 2.5, "baseline": False}, LatencySpec(budget_ms=2.5, use_baseline=False)),
    ],
)
def test_attnperf_latency_specs(kwargs: dict[str, object], expected: LatencySpec) -> None:
    assert attnperf_latency(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, MemorySpec()),
        ({"tolerance": "5%"}, MemorySpec(tolerance=0.05)),
        ({"ceiling": "2 GiB"}, MemorySpec(ceiling_bytes=2 * 1024**3)),
        ({"ceiling": 4096, "baseline": False}, MemorySpec(ceiling_bytes=4096, use_baseline=False)),
    ],
)
def test_attnperf_memory_specs(kwargs: dict[str, object], expected: MemorySpec) -> None:
    assert attnperf_memory(**kwargs) == expected  # type: ignore[arg-type]


def test_attnperf_equivalence_specs() -> None:
    assert attnperf_equivalence() == EquivalenceSpec("fa2", 2.0, 1e-2, 2e-2)
    assert attnperf_equivalence(rule="allclose", rtol=0, atol=1) == EquivalenceSpec("allclose", 2.0, 0.0, 1.0)
    assert attnperf_backends("eager", "sdpa-math") == ("eager", "sdpa-math")


def test_repeated_marker_values_make_one_case_each() -> None:
    # A repeat used to become a second case under an id pytest made unique (eager-64_0), matching no baseline.
    assert attnperf_backends("eager", "sdpa-math", "eager") == ("eager", "sdpa-math")
    spec = attnperf_shape(heads=[2, 2, 4], dtype=["fp16", "float16"], seqlens=[64, 64])
    assert spec.values == {"heads": (2, 4), "dtype": ("float16",), "seqlens": (64,)}
    assert len(spec.variants()) == 2


@pytest.mark.parametrize(
    ("function", "kwargs", "fragment"),
    [
        (attnperf_latency, {"tolerance": "abc"}, "cannot read 'abc' as a tolerance"),
        (attnperf_latency, {"tolerance": -0.1}, "tolerance -0.1 is out of range"),
        (attnperf_latency, {"baseline": False}, "baseline=False and no budget: nothing would be checked"),
        (attnperf_latency, {"baseline": False, "tolerance": 0.1, "budget": 1}, "tolerance compares with the baseline"),
        (attnperf_latency, {"baseline": "no"}, "baseline must be True or False, not 'no'"),
        (attnperf_latency, {"budget": 0}, "must be positive"),
        (attnperf_memory, {"ceiling": "2 gib"}, "did you mean 'GiB'?"),
        (attnperf_memory, {"ceiling": "-1 MiB"}, "cannot read '-1 MiB' as a size"),
        (attnperf_memory, {"ceiling": 0}, "a ceiling of 0 bytes can never hold"),
        (attnperf_memory, {"baseline": False}, "baseline=False and no ceiling: nothing would be checked"),
        (attnperf_equivalence, {"rule": "x"}, "rule 'x' is not one of 'fa2', 'fa3', 'allclose'"),
        (attnperf_equivalence, {"factor": 0.5}, "factor 0.5 below 1"),
        (attnperf_equivalence, {"rtol": -1}, "rtol must be a finite non-negative number, not -1"),
        (attnperf_equivalence, {"atol": float("nan")}, "atol must be a finite non-negative number, not nan"),
        (attnperf_equivalence, {"factor": True}, "factor must be a finite non-negative number, not True"),
        (attnperf_shape, {"heads": 0}, "heads 0 must be at least 1"),
        (attnperf_shape, {"dtype": "float64"}, "unsupported dtype 'float64'"),
        (attnperf_shape, {"window": (-2, 0)}, "window (-2, 0) must be a (left, right) pair of ints >= -1"),
        (attnperf_shape, {"causal": "yes"}, "causal must be True or False, not 'yes'"),
        (attnperf_shape, {"scale": 0}, "scale must be a positive finite number or None, not 0"),
        (attnperf_shape, {"mode": "sideways"}, "mode 'sideways' is not one of forward, backward, forward+backward"),
        (attnperf_shape, {"dtype": []}, "dtype is an empty list"),
        (attnperf_shape, {"seqlens": "0"}, "context length '0' must be at least 1"),
    ],
)
def test_marker_functions_refuse_bad_arguments(function: object, kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        function(**kwargs)  # type: ignore[operator]


def test_attnperf_backends_needs_names() -> None:
    with pytest.raises(ValueError, match="give at least one backend name"):
        attnperf_backends()
    with pytest.raises(ValueError, match="backend names are strings, not 3"):
        attnperf_backends("eager", 3)  # type: ignore[arg-type]


def test_shape_lists_become_variants() -> None:
    spec = attnperf_shape(dtype=["fp16", "bf16"], causal=[True, False], heads=8, window=(256, 0), seqlens="1K,4K")
    assert spec.values["window"] == ((256, 0),)  # a (left, right) pair is one value, not a list
    assert spec.values["seqlens"] == (1024, 4096)
    assert spec.varying() == ["dtype", "causal"]
    variants = spec.variants()
    assert len(variants) == 4
    assert variants[0] == {"dtype": "float16", "causal": True, "heads": 8, "window": (256, 0)}
    assert [variant_id(variant, spec.varying()) for variant in variants] == [
        "fp16-causal",
        "fp16-full",
        "bf16-causal",
        "bf16-full",
    ]


@pytest.mark.parametrize(
    ("values", "varying", "expected"),
    [
        ({"window": ((-1, -1), (128, 0))}, ["window"], ["nowin", "win128_0"]),
        ({"heads": (8, 16)}, ["heads"], ["heads8", "heads16"]),
        ({"mode": ("forward", "forward+backward")}, ["mode"], ["modeforward", "modeforward-backward"]),
        ({"heads": (8,)}, [], [""]),  # nothing varies: no id part (the plugin leaves it out)
        ({"workload": ("prefill", "decode")}, ["workload"], ["", "decode"]),
        ({"workload": ("paged",), "page_size": (16, 256)}, ["page_size"], ["paged-page16", "paged-page256"]),
        ({"workload": ("varlen",), "q_len": (1,)}, [], ["varlen-q1"]),
    ],
)
def test_variant_ids(values: dict[str, tuple[object, ...]], varying: list[str], expected: list[str]) -> None:
    spec = ShapeSpec(values)
    assert [variant_id(variant, varying) for variant in spec.variants()] == expected


# ---------------------------------------------------------------- evaluate_marker


def test_evaluate_marker_error_names_test_marker_arguments_and_accepted_form() -> None:
    mark = pytest.mark.attnperf_latency(tolerance="abc").mark
    with pytest.raises(MarkerError) as error:
        evaluate_marker(mark, "test_x.py::test_gate[eager-64]")
    assert str(error.value) == (
        "test_x.py::test_gate[eager-64]: @pytest.mark.attnperf_latency(tolerance='abc'): cannot read 'abc' as a "
        "tolerance; expected a fraction such as 0.1 or a percentage such as '10%', from 0 to 10\n"
        "    accepted: @pytest.mark.attnperf_latency(tolerance=0.1 | '10%', budget=2.5 | '2.5 ms' | '250 us', "
        "baseline=True, cuda_graph=None | True | False)"
    )


def test_evaluate_marker_turns_an_unknown_keyword_into_a_marker_error() -> None:
    mark = pytest.mark.attnperf_memory("2 GiB", bogus=1).mark
    with pytest.raises(MarkerError) as error:
        evaluate_marker(mark, "t.py::test")
    message = str(error.value)
    assert message.startswith("t.py::test: @pytest.mark.attnperf_memory('2 GiB', bogus=1): ")
    assert "attnperf_memory() " not in message  # the function's own name is not repeated
    assert f"accepted: @pytest.mark.{MARKER_USAGE['attnperf_memory']}" in message


def test_evaluate_marker_returns_the_spec() -> None:
    assert evaluate_marker(pytest.mark.attnperf_latency(budget="2 ms").mark, "t") == LatencySpec(budget_ms=2.0)


# ---------------------------------------------------------------- at collection, through pytest


BAD_GATE_MARKS = [
    ('attnperf_latency(tolerance="abc")', "cannot read 'abc' as a tolerance"),
    ("attnperf_latency(tolerance=-0.1)", "tolerance -0.1 is out of range"),
    ("attnperf_latency(bogus=1)", "got an unexpected keyword argument 'bogus'"),
    ("attnperf_latency(baseline=False)", "baseline=False and no budget: nothing would be checked"),
    ('attnperf_memory(ceiling="2 gib")', "unknown size unit 'gib' in '2 gib' (did you mean 'GiB'?)"),
    ('attnperf_memory(ceiling="-1 MiB")', "cannot read '-1 MiB' as a size"),
    ('attnperf_equivalence(rule="x")', "rule 'x' is not one of 'fa2', 'fa3', 'allclose'"),
]


@pytest.mark.parametrize("enabled", [False, True], ids=["off", "on"])
@pytest.mark.parametrize(("mark", "problem"), BAD_GATE_MARKS)
def test_bad_check_marker_is_a_usage_error_at_collection(
    pytester: pytest.Pytester, mark: str, problem: str, enabled: bool
) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import pytest

        def test_fine():
            pass

        @pytest.mark.{mark}
        def test_marked(attnperf, attn_backend, qkv):
            attnperf.measure(attn_backend, qkv)
    """
    )
    result = pytester.runpytest_inprocess(*FAST, *(["--attnperf"] if enabled else []))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output
    name = mark.split("(")[0]
    arguments = mark[len(name) :].replace('"', "'")
    assert f"test_bad.py::test_marked[eager-64]: @pytest.mark.{name}{arguments}: " in output
    assert problem in output
    assert f"accepted: @pytest.mark.{MARKER_USAGE[name]}" in output
    assert "test_bad.py::test_fine" not in output  # nothing ran, nothing else is blamed


@pytest.mark.parametrize(
    ("mark", "problem"),
    [
        (
            'attnperf_backends("nope")',
            "unknown attention backend 'nope'; expected one of: eager, sdpa-math, sdpa-flash, sdpa-efficient",
        ),
        ("attnperf_backends()", "give at least one backend name"),
        ("attnperf_shape(heads=0)", "heads 0 must be at least 1"),
    ],
)
def test_bad_parametrizing_marker_is_a_collection_error_naming_the_test(
    pytester: pytest.Pytester, mark: str, problem: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import pytest

        @pytest.mark.{mark}
        def test_marked(attnperf, attn_backend, qkv):
            attnperf.measure(attn_backend, qkv)
    """
    )
    result = pytester.runpytest_inprocess(*FAST)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    output = result.stdout.str()
    assert "INTERNALERROR" not in output
    assert re.search(r"test_bad\.py::test_marked: .*" + re.escape(problem), output), output
    result.stdout.fnmatch_lines(["*1 error*"])


@pytest.mark.parametrize(
    ("mark", "extra", "message"),
    [
        (
            'attnperf_backends("nope")',
            (),
            # {names}: the registry as it is when the test runs (another test may have registered one meanwhile)
            "test_bad.py::test_marked: unknown attention backend 'nope'; expected one of: {names}",
        ),
        (
            "attnperf_shape(heads=3, kv_heads=2)",
            ("--attnperf",),
            "test_bad.py::test_marked[eager-64]: impossible attention shape: heads (3) must be a multiple of kv_heads (2)",
        ),
    ],
    ids=["collection", "setup"],
)
def test_errors_are_printed_once_without_exception_chaining(
    pytester: pytest.Pytester, mark: str, extra: tuple[str, ...], message: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import pytest

        @pytest.mark.{mark}
        def test_marked(attn_backend, qkv):
            pass
    """
    )
    result = pytester.runpytest_inprocess(*FAST, *extra)
    assert result.ret != pytest.ExitCode.OK
    assert "During handling of the above exception" not in result.stdout.str()
    expected = message.format(names=", ".join(REGISTRY.names()))
    assert [line for line in result.stdout.lines if line.startswith("test_bad.py::test_marked")] == [expected]


def test_impossible_shape_fails_naming_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_shape="""
        import pytest

        @pytest.mark.attnperf_shape(heads=3, kv_heads=2)
        def test_marked(attnperf, attn_backend, qkv):
            attnperf.measure(attn_backend, qkv)
    """
    )
    result = pytester.runpytest_inprocess(*FAST, "--attnperf")
    result.assert_outcomes(errors=1)
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "test_shape.py::test_marked[[]eager-64[]]: impossible attention shape: heads (3) must be a multiple of "
            "kv_heads (2)",
        ]
    )


def test_backends_and_shape_marks_parametrize_in_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_ids="""
        import pytest

        @pytest.mark.attnperf_shape(dtype=["float16", "bfloat16"], causal=[True, False], seqlens=[64, 128])
        @pytest.mark.attnperf_backends("sdpa-math", "eager")
        def test_x(attn_backend, qkv):
            pass
    """
    )
    result = pytester.runpytest_inprocess(*FAST, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    ids = [line.split("[", 1)[1].rstrip("]") for line in result.stdout.lines if line.startswith("test_ids.py::")]
    # Shape variant outer; then context length, then backend in the mark's order (a case's backends share inputs).
    assert ids == [
        f"{variant}-{backend}-{length}"
        for variant in ("fp16-causal", "fp16-full", "bf16-causal", "bf16-full")
        for length in (64, 128)
        for backend in ("sdpa-math", "eager")
    ]


def test_shape_variants_reach_the_inputs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_variants="""
        import pytest

        @pytest.mark.attnperf_shape(dtype=["float16", "bfloat16"], heads=4, kv_heads=[1, 4], window=(8, 0))
        def test_x(attn_backend, qkv, record_property):
            record_property("label", qkv.shape.label())
            record_property("dtype", str(qkv.q.dtype))
    """
    )
    reprec = pytester.inline_run(*FAST, "--attnperf")
    reprec.assertoutcome(passed=4)
    seen = {
        report.nodeid.split("[")[1].rstrip("]"): dict(report.user_properties)
        for report in reprec.getreports("pytest_runtest_logreport")
        if report.when == "call"
    }
    assert seen == {
        "kv_heads1-fp16-eager-64": {"label": "fp16-causal-win8_0-b1-h4kv1-d16", "dtype": "torch.float16"},
        "kv_heads1-bf16-eager-64": {"label": "bf16-causal-win8_0-b1-h4kv1-d16", "dtype": "torch.bfloat16"},
        "kv_heads4-fp16-eager-64": {"label": "fp16-causal-win8_0-b1-h4-d16", "dtype": "torch.float16"},
        "kv_heads4-bf16-eager-64": {"label": "bf16-causal-win8_0-b1-h4-d16", "dtype": "torch.bfloat16"},
    }
