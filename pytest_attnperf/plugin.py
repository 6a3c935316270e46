"""pytest-attnperf's hooks: a table of contents over the plain modules.

Loaded into every pytest run of the environment, so it imports nothing heavy: torch,
transformers, matplotlib and NVML are imported when ``--attnperf`` is given or a plugin
fixture is requested. It acts only on what is its own: the ``attnperf_*`` marks, and the
fixtures that resolve to :mod:`pytest_attnperf.fixtures` (a project's own ``qkv`` or
``context_len`` is left alone).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Generator
from typing import Any

import pytest

from . import fixtures
from .fixtures import BENCHMARK_FIXTURES, RUNNER_KEY, plugin_fixture_names
from .session.output_paths import OutputPathError, check_output_paths
from .session.rootdir_guard import check_option_spelling
from .session.state import SESSION_KEY, AttnPerfSession, session_of
from .spec.marker_text import MARKER_HELP, MARKER_USAGE
from .spec.options import VALUED_FLAGS, add_pytest_options, ini_values
from .spec.settings import SettingsError, resolve_settings

SKIP_REASON = "attention benchmark: runs only with --attnperf"

# ---------------------------------------------------------------- configuration


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for name, usage in MARKER_USAGE.items():
        config.addinivalue_line("markers", f"{usage}: {MARKER_HELP[name]}")
    cli = {name: value for name, value in vars(config.option).items() if name.startswith("attnperf")}
    ini = ini_values(config.getini)
    check_option_spelling(config, VALUED_FLAGS)
    try:
        settings = resolve_settings(
            cli, ini, rootdir=config.rootpath, inifile=config.inipath, invocation_dir=config.invocation_params.dir
        )
    except SettingsError as error:
        raise pytest.UsageError(str(error)) from None
    is_worker = hasattr(config, "workerinput")
    if settings.enabled and not is_worker:
        try:
            check_output_paths(settings)  # the paths this run writes: refused now, not after the measuring
        except OutputPathError as error:
            raise pytest.UsageError(str(error)) from None
    if settings.update and not is_worker:
        from .session.update_process import SteeringError, join_update

        try:
            join_update()  # steered only by a live `attnperf update`; stray ATTNPERF_RUN* variables are refused
        except SteeringError as error:
            raise pytest.UsageError(str(error)) from None
    # The pytest-xdist controller runs no test: it must not touch a GPU the workers are timing.
    distributing = not is_worker and getattr(config.option, "dist", "no") != "no"
    state = AttnPerfSession(settings, is_worker=is_worker, distributing=distributing)
    config.stash[SESSION_KEY] = state
    config.pluginmanager.register(fixtures, "attnperf-fixtures")
    if settings.enabled:
        if settings.compile_cache_dir is not None:  # before torch compiles anything
            from .session.cost import use_compile_cache

            try:
                state.cost.compile_cache = use_compile_cache(settings.compile_cache_dir)
            except ValueError as error:
                raise pytest.UsageError(str(error)) from None
        config.pluginmanager.register(ResultCollector(state), "attnperf-results")
        from .session.deferral import Deferrer

        state.deferrer = Deferrer(state)


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session_of(session.config)
    if state.settings.enabled and not state.distributing:
        # torch's structured-trace logger emits DEBUG records meant for TORCH_TRACE files; through
        # pytest's log capture they would bury every failure report under hundreds of lines.
        logging.getLogger("torch.__trace").propagate = False
        state.cost.session_start_at = time.time()
        try:
            state.start()  # device, its description and its baseline file: bad ones stop the run here
        except ValueError as error:
            raise pytest.UsageError(str(error)) from None
        state.cost.session_ready_at = time.time()  # torch, CUDA, the spin-up and the machine reference in between


# ---------------------------------------------------------------- collection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize this plugin's attn_backend, context_len and shape variants from options and marks."""
    ours = plugin_fixture_names(metafunc._arg2fixturedefs) & set(metafunc.fixturenames)
    if not ours & {"attn_backend", "context_len", "_attnperf_variant"}:
        return
    from .backends.registry import REGISTRY, BackendError
    from .spec.marks import MarkerError, case_spec, evaluate_marker, variant_id
    from .spec.shapes import length_id

    state = session_of(metafunc.config)
    where = metafunc.definition.nodeid
    failure = None
    try:
        shape_mark = metafunc.definition.get_closest_marker("attnperf_shape")
        shape_spec = evaluate_marker(shape_mark, where) if shape_mark else None
        backend_mark = metafunc.definition.get_closest_marker("attnperf_backends")
        chosen = evaluate_marker(backend_mark, where) if backend_mark else state.settings.backends
        backends = [backend.name for backend in REGISTRY.select(chosen)] if "attn_backend" in ours else []
    except MarkerError as error:
        failure = str(error)
    except BackendError as error:
        failure = f"{where}: {error}"
    if failure is not None:  # raised outside the except block: no "During handling of the above exception"
        pytest.fail(failure, pytrace=False)
    spec = case_spec(shape_spec, state.settings.workloads)
    variants = spec.variants()
    variant_ids = [variant_id(variant, spec.varying()) for variant in variants]
    parametrize_variant = "_attnperf_variant" in ours and any(variant_ids)
    seqlens = spec.values.get("seqlens") or state.settings.seqlens_for(state.is_cuda)
    # Variant outer, then context length, backend inner: consecutive tests share inputs and the reference output.
    # One parametrization, whose id reads variant-backend-length and leaves out an empty part (so a prefill
    # variant keeps the id it had before workloads existed: 'eager-1K').
    names = ["_attnperf_variant"] if parametrize_variant else []
    axes: list[list[tuple[Any, str]]] = [list(zip(variants, variant_ids, strict=True))] if parametrize_variant else []
    if "context_len" in ours:
        names.append("context_len")
        axes.append([(length, length_id(length)) for length in seqlens])
    if "attn_backend" in ours:
        names.append("attn_backend")
        axes.append([(backend, backend) for backend in backends])
    if not names:
        return
    cases = list(itertools.product(*axes))
    metafunc.parametrize(
        names,
        [tuple(value for value, _ in case) for case in cases],
        indirect=[name for name in names if name != "_attnperf_variant"],  # through our fixtures: still resolved here
        ids=[_case_id(names, case) for case in cases],
    )


def _case_id(names: list[str], case: tuple[tuple[Any, str], ...]) -> str:
    parts = dict(zip(names, (part for _, part in case), strict=True))
    ordered = (parts.get(name, "") for name in ("_attnperf_variant", "attn_backend", "context_len"))
    return "-".join(part for part in ordered if part) or "default"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate every attnperf mark now (not after the test ran); skip the benchmarks without --attnperf."""
    state = session_of(config)
    gated: set[int] = set()
    marked = [item for item in items if _has_attnperf_marks(item)]
    if marked:  # the marker parsers load only for a suite that uses the markers
        from .spec.marks import MarkerError, item_marks

        errors = []
        for item in marked:
            try:
                if item_marks(item).gate.any:
                    gated.add(id(item))
            except MarkerError as error:
                errors.append(str(error))
        if errors:
            raise pytest.UsageError("invalid attnperf marker arguments:\n  " + "\n  ".join(errors))
    if state.settings.enabled:
        state.cost.collected_at = time.time()  # start-up's split: interpreter, imports and collection before this
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if id(item) in gated or _uses_benchmark_fixture(item):
            item.add_marker(skip)


def _has_attnperf_marks(item: pytest.Item) -> bool:
    return any(mark.name.startswith("attnperf_") for mark in item.iter_markers())


def _uses_benchmark_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and bool(BENCHMARK_FIXTURES & plugin_fixture_names(info.name2fixturedefs))


# ---------------------------------------------------------------- running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test with attnperf check marks must have measured something."""
    result = yield
    runner = item.stash.get(RUNNER_KEY, None)
    measured = runner is not None and runner.result is not None
    if not session_of(item.config).settings.enabled:
        return result
    from .spec.marks import item_marks

    if item_marks(item).gate.any and not measured:
        pytest.fail(
            f"{item.nodeid} has attnperf check marks but measured nothing: request the `attnperf` fixture and "
            "call attnperf.measure(attn_backend, qkv) (or attnperf.measure_workload(fn, name=...))",
            pytrace=False,
        )
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Gated latency cases run through the session's protocol, which can hold an ambiguous one for the end."""
    state = session_of(item.config)
    if state.deferrer is None:
        return None
    from .session.deferral import wants_protocol
    from .spec.marks import item_marks

    if not wants_protocol(state, item_marks(item).gate.latency is not None):
        return None
    return bool(state.deferrer.run_protocol(item, nextitem))


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """After the last test: the held (ambiguous) cases are measured again after a cool-down, and reported."""
    state = session_of(session.config)
    interrupted = True
    try:
        result = yield
        interrupted = bool(session.shouldfail or session.shouldstop)
        return result
    finally:
        if state.deferrer is not None:
            state.deferrer.finish(interrupted=interrupted)


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
        self.state.cost.note(report.when, report.start, report.stop, report.nodeid)
        if report.when != "call":
            return
        from .gate.results import RECORD_PROPERTY, CaseRecord

        for name, value in report.user_properties:
            if name == RECORD_PROPERTY:
                self.state.add_result(CaseRecord.from_json(str(value)))


# ---------------------------------------------------------------- the end


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session_of(session.config)
    if state.is_worker or not state.settings.enabled:
        return
    state.finish(session)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = session_of(config)
    if state.is_worker or not state.settings.enabled:
        return
    from .session.report import skip_reason_lines, terminal_summary

    terminal_summary(terminalreporter, state.report())
    reasons = [_skip_reason(report) for report in terminalreporter.stats.get("skipped", [])]
    if reasons:  # a bare "s" says nothing: most are backends that cannot run on this device
        terminalreporter.section(f"attnperf: {len(reasons)} skipped, by reason")
        for line in skip_reason_lines(reasons):
            terminalreporter.write_line(line)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


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
    clocks += [f"attnperf: CPU busy: {problem}" for problem in state.cpu_problems]
    return [
        *clocks,
        f"attnperf: {_device_words(info.name, info.device, info.generation)}; {versions}",
        f"attnperf: baselines {state.baseline_file_label()} ({state.baseline_status()})",
    ]


def _device_words(name: str, device: str, generation: str) -> str:
    """'NVIDIA H100 (cuda:0, Hopper)', or of a CPU: 'the CPU, AMD EPYC 7B13 (no GPU in this run)'."""
    if device.startswith("cuda"):
        return f"{name} ({device}, {generation})"
    return f"the CPU, {name} (no GPU in this run)"
