"""pytest hooks and fixtures of pytest-attnperf: a table of contents over the plain modules."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Generator
from typing import Any

import pytest

from . import report
from .backends import REGISTRY, Backend, BackendError
from .checks import GateContext
from .gate import GatePolicy, equivalence_violation, evaluate_gate
from .gpu import DeviceInfo
from .hf import _attnperf_hf_models, hf_model  # noqa: F401 -- fixtures of this plugin
from .inputs import QKV, AttnShape, Mode, make_qkv
from .marks import MARKER_HELP, MARKER_USAGE, GateMarks, MarkerError, evaluate_gate_marks, evaluate_marker, variant_id
from .options import SettingsError, add_pytest_options, resolve_settings
from .results import RECORD_PROPERTY, CaseResult
from .runner import AttnPerf
from .session import AttnPerfSession

SESSION_KEY = pytest.StashKey[AttnPerfSession]()
GATE_MARKS_KEY = pytest.StashKey[GateMarks]()
RUNNER_KEY = pytest.StashKey[AttnPerf]()
PERF_FIXTURES = frozenset({"attnperf", "attn_backend", "qkv", "attn_shape", "context_len", "hf_model"})
SKIP_REASON = "attention benchmark: runs only with --attnperf"


def session_of(config: pytest.Config) -> AttnPerfSession:
    return config.stash[SESSION_KEY]


# ---------------------------------------------------------------- configuration


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for name, usage in MARKER_USAGE.items():
        config.addinivalue_line("markers", f"{usage}: {MARKER_HELP[name]}")
    cli = {name: value for name, value in vars(config.option).items() if name.startswith("attnperf")}
    ini = {}
    for dest in cli:
        try:
            ini[dest] = config.getini(dest)
        except ValueError:  # flags without an ini key
            continue
    try:
        settings = resolve_settings(cli, ini, rootdir=config.rootpath, inifile=config.inipath)
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    is_worker = hasattr(config, "workerinput")
    # The pytest-xdist controller runs no test: it must not touch a GPU the workers are timing.
    distributing = not is_worker and getattr(config.option, "dist", "no") != "no"
    state = AttnPerfSession(settings, is_worker=is_worker, distributing=distributing)
    config.stash[SESSION_KEY] = state
    config.pluginmanager.register(ResultCollector(state), "attnperf-results")


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session_of(session.config)
    if state.settings.enabled and not state.distributing:
        # torch's structured-trace logger emits DEBUG records meant for TORCH_TRACE files; through
        # pytest's log capture they would bury every failure report under hundreds of lines.
        logging.getLogger("torch.__trace").propagate = False
        try:
            state.start()  # device, its description and its baseline file: bad ones stop the run here
        except ValueError as error:
            raise pytest.UsageError(str(error)) from None


# ---------------------------------------------------------------- collection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize attn_backend, the shape variants and context_len from options and marks."""
    state = session_of(metafunc.config)
    names = metafunc.fixturenames
    where = metafunc.definition.nodeid
    failure = None
    try:
        shape_mark = metafunc.definition.get_closest_marker("attnperf_shape")
        shape_spec = evaluate_marker(shape_mark, where) if shape_mark else None
        backend_mark = metafunc.definition.get_closest_marker("attnperf_backends")
        chosen = evaluate_marker(backend_mark, where) if backend_mark else state.settings.backends
        backends = [backend.name for backend in REGISTRY.select(chosen)]
    except MarkerError as error:
        failure = str(error)
    except BackendError as error:
        failure = f"{where}: {error}"
    if failure is not None:  # raised outside the except block: no "During handling of the above exception"
        pytest.fail(failure, pytrace=False)
    if "_attnperf_variant" in names and shape_spec is not None and shape_spec.varying():
        variants = shape_spec.variants()
        varying = shape_spec.varying()
        metafunc.parametrize("_attnperf_variant", variants, ids=[variant_id(v, varying) for v in variants])
    seqlens = (shape_spec.values.get("seqlens") if shape_spec else None) or state.settings.seqlens_for(state.is_cuda)
    # Context length outer, backend inner: consecutive tests share inputs and the reference output.
    if "attn_backend" in names and "context_len" in names:
        pairs = [(length, backend) for length in seqlens for backend in backends]
        metafunc.parametrize(
            ["context_len", "attn_backend"],
            pairs,
            indirect=["attn_backend"],
            ids=[f"{backend}-{_length_id(length)}" for length, backend in pairs],
        )
    elif "attn_backend" in names:
        metafunc.parametrize("attn_backend", backends, indirect=True, ids=backends)
    elif "context_len" in names:
        metafunc.parametrize("context_len", list(seqlens), ids=[_length_id(n) for n in seqlens])


def _length_id(length: int) -> str:
    return f"{length // 1024}K" if length % 1024 == 0 else str(length)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate every attnperf mark now (not after the test ran); skip the perf tests without --attnperf."""
    state = session_of(config)
    errors = []
    for item in items:
        try:
            item.stash[GATE_MARKS_KEY] = evaluate_gate_marks(item)
        except MarkerError as error:
            errors.append(str(error))
    if errors:
        raise pytest.UsageError("invalid attnperf marker arguments:\n  " + "\n  ".join(errors))
    if state.settings.enabled:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        uses_fixture = bool(PERF_FIXTURES.intersection(getattr(item, "fixturenames", ())))
        if uses_fixture or item.stash[GATE_MARKS_KEY].any:
            item.add_marker(skip)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def gpu_info(pytestconfig: pytest.Config) -> DeviceInfo:
    """The device this run measures on: name, slug, capability, generation, memory, versions."""
    return session_of(pytestconfig).info


@pytest.fixture
def attn_backend(request: pytest.FixtureRequest) -> Backend:
    """An attention backend from the registry (parametrized); skipped with its reason when unavailable."""
    if not hasattr(request, "param"):
        raise pytest.UsageError(f"{request.node.nodeid}: attn_backend is parametrized by pytest-attnperf")
    backend = REGISTRY.get(request.param)
    reason = backend.unavailable_reason(session_of(request.config).info)
    if reason:
        pytest.skip(reason)
    return backend


@pytest.fixture
def _attnperf_variant() -> dict[str, Any]:
    """Shape settings of one attnperf_shape variant (parametrized when a mark lists several)."""
    return {}


@pytest.fixture
def context_len(request: pytest.FixtureRequest) -> int:
    """Query and key length of this case (parametrized from --attnperf-seqlens or the shape mark)."""
    return int(request.param)


@pytest.fixture
def attn_shape(request: pytest.FixtureRequest, context_len: int, _attnperf_variant: dict[str, Any]) -> AttnShape:
    """The attention shape of this case: options, then the attnperf_shape mark, then its variant."""
    state = session_of(request.config)
    fields = state.settings.shape_defaults(state.is_cuda)
    mark = request.node.get_closest_marker("attnperf_shape")
    if mark is not None:
        fields.update({key: values[0] for key, values in evaluate_marker(mark, request.node.nodeid).values.items()})
    fields.update(_attnperf_variant)
    fields.pop("mode", None)
    fields.pop("seqlens", None)
    if "heads" in fields and "kv_heads" not in (_attnperf_variant.keys() | (mark.kwargs.keys() if mark else set())):
        fields["kv_heads"] = min(fields["kv_heads"], fields["heads"]) if state.settings.kv_heads else fields["heads"]
    try:
        return AttnShape(q_len=context_len, k_len=context_len, **fields)
    except ValueError as error:
        problem = str(error)
    pytest.fail(f"{request.node.nodeid}: impossible attention shape: {problem}", pytrace=False)


@pytest.fixture
def qkv(request: pytest.FixtureRequest, attn_shape: AttnShape) -> QKV:
    """Seeded Q/K/V for this case on the run's device: same seed, same bits, on every machine."""
    state = session_of(request.config)
    return state.inputs(attn_shape, lambda: make_qkv(attn_shape, seed=state.settings.seed, device=state.device))


@pytest.fixture
def attnperf(request: pytest.FixtureRequest, _attnperf_variant: dict[str, Any]) -> AttnPerf:
    """Measures a backend on seeded inputs (``attnperf.measure(attn_backend, qkv)``) under this test's marks."""
    state = session_of(request.config)
    item = request.node
    marks = item.stash.get(GATE_MARKS_KEY, None) or evaluate_gate_marks(item)
    shape_mark = item.get_closest_marker("attnperf_shape")
    mode: Mode = (
        _attnperf_variant.get("mode")
        or (evaluate_marker(shape_mark, item.nodeid).values.get("mode", (None,))[0] if shape_mark else None)
        or state.settings.mode
    )
    runner = AttnPerf(
        test_id=item.nodeid,
        device=state.device,
        info=state.info,
        timing=(
            dataclasses.replace(state.settings.timing, cuda_graph=marks.latency.cuda_graph)
            if marks.latency is not None and marks.latency.cuda_graph is not None
            else state.settings.timing
        ),
        mode=mode,
        equivalence=marks.equivalence,
        finish=lambda result: _finish(item, marks, result),
        suspect=lambda result: _suspect(item, marks, result),
        benchmark=request.getfixturevalue("benchmark") if _benchmark_output_requested(request.config) else None,
    )
    item.stash[RUNNER_KEY] = runner
    return runner


def _benchmark_output_requested(config: pytest.Config) -> bool:
    """True when the user asked pytest-benchmark for output, so our samples should appear in it."""
    options = ("benchmark_json", "benchmark_save", "benchmark_autosave", "benchmark_compare", "benchmark_histogram")
    return any(config.getoption(name, None) for name in options)


# ---------------------------------------------------------------- the gate


def _suspect(item: pytest.Item, marks: GateMarks, result: CaseResult) -> bool:
    """A median over its baseline's tolerance is measured again before the test may fail."""
    state = session_of(item.config)
    baseline = state.baseline_entry(item.nodeid)
    if marks.latency is None or state.settings.update or baseline is None or baseline.median_ms is None:
        return False
    tolerance = marks.latency.tolerance if marks.latency.tolerance is not None else state.settings.latency_tolerance
    return result.median_ms is not None and result.median_ms > baseline.median_ms * (1 + tolerance)


def _finish(item: pytest.Item, marks: GateMarks, result: CaseResult) -> None:
    """Decide this case's verdict now, so a regression fails its own test."""
    state = session_of(item.config)
    context = GateContext(
        test_id=item.nodeid,
        device_name=result.device,
        baseline_file=state.baseline_file_label(),
        environment_changes=state.environment_changes(),
    )
    policy = GatePolicy(
        latency_tolerance=state.settings.latency_tolerance,
        memory_tolerance=state.settings.memory_tolerance,
        missing=state.settings.missing,
        updating=state.settings.update,
    )
    result.baseline_file = context.baseline_file
    outcome = evaluate_gate(result, marks, state.baseline_entry(item.nodeid), policy, context)
    mismatch = equivalence_violation(result, context)
    violations = ([mismatch] if mismatch else []) + outcome.violations
    if violations:
        result.outcome = "failed"
    elif outcome.skip_reason:
        result.outcome = "skipped"
    item.user_properties.append((RECORD_PROPERTY, result.to_json()))
    item.user_properties.extend(result.junit_properties())
    for message in outcome.warnings:
        warnings.warn(pytest.PytestWarning(message), stacklevel=1)
    if violations:
        pytest.fail("\n".join(violation.message for violation in violations), pytrace=False)
    if outcome.skip_reason:
        pytest.skip(outcome.skip_reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test with attnperf check marks must have measured something."""
    result = yield
    marks = item.stash.get(GATE_MARKS_KEY, None)
    runner = item.stash.get(RUNNER_KEY, None)
    if marks is not None and marks.any and (runner is None or runner.result is None):
        pytest.fail(
            f"{item.nodeid} has attnperf check marks but measured nothing: request the `attnperf` fixture and call "
            "attnperf.measure(attn_backend, qkv) (or attnperf.measure_workload(fn, name=...))",
            pytrace=False,
        )
    return result


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` with --attnperf on a GPU host: one worker per GPU, never two timing on one GPU."""
    if not config.getoption("attnperf"):
        return None
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else None


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Leaving a test module: drop the cached inputs and references, so the next module starts clean."""
    state = session_of(item.config)
    if state.settings.enabled and getattr(nextitem, "module", None) is not getattr(item, "module", None):
        state.release_caches()


class ResultCollector:
    """Collects the results from the reports: the same path with and without pytest-xdist."""

    def __init__(self, state: AttnPerfSession) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == RECORD_PROPERTY:
                self.state.add_result(CaseResult.from_json(str(value)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session_of(session.config)
    if state.is_worker or not state.settings.enabled:
        return
    state.finish(session)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = session_of(config)
    if state.is_worker or not state.settings.enabled:
        return
    report.terminal_summary(terminalreporter, state)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = session_of(config)
    if not state.settings.enabled or state.is_worker:
        return None
    if state.distributing:
        return ["attnperf: distributed over pytest-xdist workers, each bound to its own GPU (cuda:N for worker gwN)"]
    info = state.info
    versions = ", ".join(f"{key} {value}" for key, value in info.software().items() if value)
    gpu_state = state.gpu_state
    clocks = []
    if gpu_state is not None:
        clocks.append(
            f"attnperf: SM clock {gpu_state.sm_clock_mhz}/{gpu_state.max_sm_clock_mhz} MHz, "
            f"{gpu_state.temperature_c} C, power limit {gpu_state.power_limit_w:.0f} W"
        )
    clocks += [f"attnperf: GPU guard: {problem}" for problem in state.guard_problems]
    return [
        *clocks,
        f"attnperf: {info.name} ({info.device}, {info.generation}); {versions}",
        f"attnperf: baselines {state.baseline_file_label()} ({state.baseline_status()})",
    ]
