"""The plugin's fixtures: the device, a backend, a shape, seeded inputs, the runner, a transformers model.

torch (and transformers) are imported inside the fixtures, so a suite that never requests one
pays nothing. A project's own fixture of the same name always wins: pytest resolves the
closest definition, and :func:`plugin_fixture_names` tells the hooks which names resolved here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from .session.state import session_of

if TYPE_CHECKING:
    from .backends.registry import Backend
    from .integrations.transformers import HFModel
    from .measure.inputs import QKV
    from .measure.memory import InputsDoNotFit
    from .session.case_runner import AttnPerf
    from .spec.device_info import DeviceInfo
    from .spec.shapes import AttnShape, Mode

# Fixtures that make a test an attention benchmark (skipped without --attnperf) when they resolve here.
BENCHMARK_FIXTURES = frozenset({"attnperf", "attn_backend", "qkv", "attn_shape", "context_len", "hf_model"})


def plugin_fixture_names(name2fixturedefs: Mapping[str, Sequence[Any]]) -> frozenset[str]:
    """The fixture names that resolve to this module's fixtures (not to a project's own of the same name).

    ``name2fixturedefs`` is pytest's per-test resolution (``item._fixtureinfo.name2fixturedefs``,
    ``metafunc._arg2fixturedefs``): for each name, the definitions visible to the test, the
    closest last. pytest has no public accessor; ``tests/unit/test_good_citizen.py`` fails if it moves.
    """
    return frozenset(
        name
        for name, definitions in name2fixturedefs.items()
        if definitions and getattr(definitions[-1].func, "__module__", None) == __name__
    )


@pytest.fixture(scope="session")
def gpu_info(pytestconfig: pytest.Config) -> DeviceInfo:
    """The device this run measures on: name, slug, capability, generation, memory, versions."""
    return session_of(pytestconfig).info


@pytest.fixture
def attn_backend(request: pytest.FixtureRequest) -> Backend:
    """An attention backend from the registry (parametrized); skipped with its reason when unavailable."""
    from .backends.registry import REGISTRY

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
    """Key length of this case, the query length too for prefill (parametrized from --attnperf-seqlens or the mark)."""
    if not hasattr(request, "param"):
        raise pytest.UsageError(f"{request.node.nodeid}: context_len is parametrized by pytest-attnperf")
    return int(request.param)


@pytest.fixture
def attn_shape(request: pytest.FixtureRequest, context_len: int, _attnperf_variant: dict[str, Any]) -> AttnShape:
    """The attention shape of this case: options, then the attnperf_shape mark, then its variant."""
    from .spec.marks import case_spec, item_marks
    from .spec.shapes import shape_for_case

    state = session_of(request.config)
    settings = state.settings
    fields = settings.shape_defaults(state.is_cuda)
    shape_spec = case_spec(item_marks(request.node).shape, settings.workloads)
    fields.update({key: values[0] for key, values in shape_spec.values.items()})
    fields.update(_attnperf_variant)
    marked = _attnperf_variant.keys() | shape_spec.values.keys()
    if "heads" in fields and "kv_heads" not in marked:
        fields["kv_heads"] = settings.kv_heads or fields["heads"]  # never lowered: a misfit is refused below
    batch_given = settings.batch is not None or "batch" in marked
    try:
        return shape_for_case(fields, context_len=context_len, seed=settings.seed, batch_given=batch_given)
    except ValueError as error:
        problem = str(error)
        if settings.kv_heads and "kv_heads" not in marked:
            problem += f" (kv_heads {settings.kv_heads} comes from --attnperf-kv-heads)"
    pytest.fail(f"{request.node.nodeid}: impossible attention shape: {problem}", pytrace=False)


@pytest.fixture
def qkv(request: pytest.FixtureRequest, attn_shape: AttnShape) -> QKV | InputsDoNotFit:
    """Seeded Q/K/V for this case on the run's device: same seed, same bits, on every machine."""
    from .measure.inputs import make_qkv
    from .measure.memory import InputsDoNotFit, describe_error, is_out_of_memory, release_memory

    state = session_of(request.config)
    try:
        return state.inputs(attn_shape, lambda: make_qkv(attn_shape, seed=state.settings.seed, device=state.device))
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        reason = f"the inputs ({attn_shape.input_bytes():,} bytes) cannot be allocated: {describe_error(error)}"
    # Outside the except block: its traceback no longer holds the partial tensors.
    release_memory(state.device, thorough=True)
    # The inputs themselves do not fit: attnperf.measure records "does not fit", as for the kernel's own memory.
    return InputsDoNotFit(attn_shape, state.settings.seed, reason)


@pytest.fixture
def attnperf(request: pytest.FixtureRequest, _attnperf_variant: dict[str, Any]) -> AttnPerf:
    """Measures a backend on seeded inputs (``attnperf.measure(attn_backend, qkv)``) under this test's marks."""
    from .session.case_gate import CaseGate
    from .session.case_runner import AttnPerf
    from .spec.marks import item_marks

    state = session_of(request.config)
    item = request.node
    marks = item_marks(item)
    shape_mode = marks.shape.values.get("mode", (None,))[0] if marks.shape else None
    mode: Mode = _attnperf_variant.get("mode") or shape_mode or state.settings.mode
    latency = marks.gate.latency
    timing = state.settings.timing
    if latency is not None and latency.cuda_graph is not None:
        timing = dataclasses.replace(timing, cuda_graph=latency.cuda_graph)
    runner = AttnPerf(
        test_id=item.nodeid,
        device=state.device,
        info=state.info,
        timing=timing,
        mode=mode,
        equivalence=marks.gate.equivalence,
        gate=CaseGate(state, item, marks.gate),
        references=state.references,
        input_guard=state.input_guard,
        gpu_state=state.gpu_state_record(),
        reference_policy=state.settings.machine_reference,
        benchmark=request.getfixturevalue("benchmark") if _benchmark_output_requested(request.config) else None,
    )
    item.stash[RUNNER_KEY] = runner
    return runner


RUNNER_KEY = pytest.StashKey["AttnPerf"]()


def _benchmark_output_requested(config: pytest.Config) -> bool:
    """True when the user asked pytest-benchmark for output, so our samples should appear in it."""
    options = ("benchmark_json", "benchmark_save", "benchmark_autosave", "benchmark_compare", "benchmark_histogram")
    return any(config.getoption(name, None) for name in options)


# ---------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def _attnperf_hf_models(pytestconfig: pytest.Config) -> Iterator[dict[str, Any]]:
    """The last model built (or its refusal), reused by consecutive tests; freed after each module."""
    models: dict[str, Any] = {}
    yield models
    if models:
        from .measure.memory import release_memory

        models.clear()
        release_memory(session_of(pytestconfig).device)


def _model_request(param: object, where: str) -> dict[str, Any]:
    if isinstance(param, tuple) and len(param) == 2:
        return {"preset": param[0], "implementation": param[1]}
    if isinstance(param, Mapping) and {"preset", "implementation"} <= param.keys():
        unknown = set(param) - {"preset", "implementation", "layers", "dtype", "scale"}
        if not unknown:
            return dict(param)
    pytest.fail(
        f"{where}: hf_model is parametrized with (preset, implementation) or a dict with keys preset, implementation "
        f"and optionally layers, dtype, scale ('full' or 'tiny'); got {param!r}",
        pytrace=False,
    )


@pytest.fixture
def hf_model(request: pytest.FixtureRequest, _attnperf_hf_models: dict[str, Any]) -> HFModel:
    """A transformers model on the run's device; parametrize indirectly with (preset or config.json, implementation)."""
    if not hasattr(request, "param"):
        raise pytest.UsageError(f"{request.node.nodeid}: parametrize hf_model indirectly with (preset, implementation)")
    wanted = _model_request(request.param, request.node.nodeid)
    from .integrations import transformers as hf

    try:
        hf.import_transformers()
    except ImportError as error:
        pytest.skip(str(error))
    from .measure.memory import release_memory
    from .spec.dtypes import parse_dtype
    from .spec.presets import resolve_model

    state = session_of(request.config)
    try:
        implementation = wanted["implementation"]
        hf.parse_implementation(implementation)
        preset = resolve_model(wanted["preset"])  # a preset name, or a local config.json
        scale = wanted.get("scale", "full" if state.is_cuda else "tiny")
        if scale not in ("full", "tiny"):
            raise ValueError(f"scale must be 'full' or 'tiny', got {scale!r}")
        dtype = parse_dtype(wanted.get("dtype") or state.settings.shape_defaults(state.is_cuda)["dtype"])
        layers, seed = wanted.get("layers", 2), state.settings.seed
        hf.model_config(preset, layers=layers)  # validates the layer count
    except ValueError as error:
        pytest.fail(f"{request.node.nodeid}: {error}", pytrace=False)
    if scale == "tiny":
        preset = hf.scaled_down(preset)  # a CPU cannot hold a 128K-token vocabulary per case; same head layout
    key = (preset, implementation, layers, dtype, str(state.device), seed)
    if _attnperf_hf_models.get("key") != key:
        _attnperf_hf_models.clear()  # free the previous model before building the next
        release_memory(state.device)
        try:
            _attnperf_hf_models["value"] = hf.build_model(
                preset, implementation, layers=layers, dtype=dtype, device=state.device, seed=seed
            )
        except hf.Unavailable as refusal:
            _attnperf_hf_models["value"] = refusal
        _attnperf_hf_models["key"] = key
    built = _attnperf_hf_models["value"]
    if isinstance(built, hf.Unavailable):
        pytest.skip(str(built))
    return built  # type: ignore[no-any-return]
