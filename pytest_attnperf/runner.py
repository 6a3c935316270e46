"""Running one case: backend + seeded inputs -> measurement, output check and a CaseResult.

The ``attnperf`` fixture hands tests an :class:`AttnPerf`; the verdict is decided by the
:class:`Gate` it is given (the session's), from what this records.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
import torch

from .backends.registry import Backend, Unsupported
from .gate.baselines import QUANTILE_COUNT
from .gate.results import CaseResult
from .integrations.pytest_benchmark import feed_samples
from .measure.equivalence import Equivalence, describe_mismatch, measure_equivalence
from .measure.input_guard import INPUTS
from .measure.inputs import QKV, seeded_normal, torch_dtype
from .measure.measurement import Measurement, measure
from .measure.memory import DoesNotFit, InputsDoNotFit, describe_error, is_out_of_memory, release_memory
from .measure.reference import reference_attention
from .measure.timing import NotCapturable
from .spec.device_info import DeviceInfo
from .spec.marks import EquivalenceSpec
from .spec.options import TimingConfig, parse_mode
from .spec.shapes import AttnShape, Mode


class Gate(Protocol):
    """What decides a case: may ask for a second measurement, then fails or skips the test."""

    def suspect(self, result: CaseResult) -> bool:
        """True when the first measurement looks like a regression and must be repeated."""

    def finish(self, result: CaseResult) -> None:
        """Decide the verdict now (pytest.fail / pytest.skip), so a regression fails its own test."""


class ReferenceCache:
    """The high- and input-precision references of the last shape, shared by every backend of it."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._value: tuple[torch.Tensor, torch.Tensor] | None = None

    def get(self, qkv: QKV) -> tuple[torch.Tensor, torch.Tensor]:
        key = (qkv.shape, qkv.seed, str(qkv.device))
        if self._key != key or self._value is None:
            self.clear()
            shape = qkv.shape
            # fp32 inputs need a float64 reference, or the input-dtype reference would equal it.
            low_dtype = torch_dtype(shape.dtype)
            high = torch.float64 if low_dtype == torch.float32 else torch.float32
            arguments: dict[str, Any] = {"causal": shape.causal, "window": shape.window, "scale": shape.scale}
            reference = reference_attention(qkv.q, qkv.k, qkv.v, compute_dtype=high, **arguments)
            low = reference_attention(qkv.q, qkv.k, qkv.v, compute_dtype=low_dtype, **arguments)
            self._key, self._value = key, (reference, low)
        return self._value

    def clear(self) -> None:
        self._key, self._value = None, None


REFERENCES = ReferenceCache()


def _canonical(output: torch.Tensor, backend: Backend) -> torch.Tensor:
    return output.transpose(1, 2) if backend.layout == "bshd" else output


def _tensor_output(raw: Any, backend: Backend) -> torch.Tensor:
    """A backend's output, which must be a tensor: anything else is named, with the backend."""
    if not isinstance(raw, torch.Tensor):
        raise TypeError(f"attention backend {backend.name!r} returned {type(raw).__name__}, expected a torch.Tensor")
    return raw


def _graph_to_differentiate(
    backend: Backend, leaves: tuple[torch.Tensor, torch.Tensor, torch.Tensor], shape: AttnShape, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward kept for autograd, and the seeded gradient of its output; out of memory -> DoesNotFit.

    It runs before measure() does, so an out-of-memory here must become "does not fit" here too.
    """
    failure = None
    try:
        q, k, v = leaves
        first_output = _tensor_output(backend.run(q, k, v, shape), backend)
        grad_output = seeded_normal(
            tuple(first_output.shape), seed=seed, stream=3, dtype=first_output.dtype, device=first_output.device
        )
        return first_output, grad_output
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        failure = describe_error(error)
    release_memory(leaves[0].device)  # outside the except block: its traceback no longer holds the tensors
    raise DoesNotFit(failure)


def make_workload(backend: Backend, qkv: QKV, mode: Mode) -> Callable[[], Any]:
    """A no-argument callable doing one forward, backward or forward+backward of ``backend``."""
    shape = qkv.shape
    q, k, v = qkv.in_layout(backend.layout)
    if mode == "forward":

        def forward() -> torch.Tensor:
            with torch.no_grad():
                return backend.run(q, k, v, shape)

        return forward
    q_leaf, k_leaf, v_leaf = (t.detach().requires_grad_(True) for t in (q, k, v))
    leaves = (q_leaf, k_leaf, v_leaf)
    first_output, grad_output = _graph_to_differentiate(backend, leaves, shape, qkv.seed)
    if mode == "backward":
        # The graph of one forward is kept and differentiated again and again.
        return functools.partial(torch.autograd.grad, first_output, leaves, grad_output, retain_graph=True)
    del first_output

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(backend.run(q_leaf, k_leaf, v_leaf, shape), leaves, grad_output)

    return forward_backward


@dataclass
class AttnPerf:
    """What a test gets from the ``attnperf`` fixture: measure a backend on seeded inputs."""

    test_id: str
    device: torch.device
    info: DeviceInfo
    timing: TimingConfig
    mode: Mode
    equivalence: EquivalenceSpec | None
    gate: Gate
    benchmark: Any = None  # pytest-benchmark's fixture, when its output was asked for
    result: CaseResult | None = None

    def measure(self, backend: Backend, qkv: QKV | InputsDoNotFit, *, mode: Mode | None = None) -> CaseResult:
        """Time ``backend`` on ``qkv``, measure its peak memory, check its output; skip if unsupported."""
        run_mode: Mode = parse_mode(mode) if mode is not None else self.mode  # type: ignore[assignment]
        if isinstance(qkv, InputsDoNotFit):
            return self._inputs_do_not_fit(backend, qkv, run_mode)
        if INPUTS.prepare(qkv):  # an earlier backend changed them (and its test failed first for another reason)
            REFERENCES.clear()
        shape = qkv.shape
        reason = backend.unsupported_reason(shape, self.info)
        if reason:
            pytest.skip(reason)
        result = self._new_result(backend.name, shape, run_mode)
        try:
            measurement = measure(make_workload(backend, qkv, run_mode), self.device, self.timing)
        except (Unsupported, NotCapturable) as unsupported:
            pytest.skip(str(unsupported))
        except DoesNotFit as oom:
            qkv.release_layouts()
            result.fits, result.reason = False, str(oom)
            self._store(result)
            return result
        self._fill(result, measurement, shape.flops(run_mode))
        del measurement
        if self.gate.suspect(result):
            # A suspected regression is measured again; the second, independent run decides.
            first_median = result.median_ms
            self._fill(
                result, measure(make_workload(backend, qkv, run_mode), self.device, self.timing), shape.flops(run_mode)
            )
            result.first_median_ms = first_median
        if self.equivalence is not None:
            equivalence = self.check_output(backend, qkv)
            # The record travels as strict JSON (no NaN/Inf): a non-finite output keeps its count and
            # first position in the mismatch text instead of an infinite max_error.
            result.max_error = equivalence.max_error if math.isfinite(equivalence.max_error) else None
            result.error_budget = equivalence.budget
            result.equivalence_passed = equivalence.passed
            result.mismatch = describe_mismatch(equivalence)
        self._refuse_modified_inputs(backend, qkv)
        qkv.release_layouts()
        release_memory(self.device)
        self._store(result)
        return result

    def _refuse_modified_inputs(self, backend: Backend, qkv: QKV) -> None:
        modified = INPUTS.modified(qkv, backend.layout)
        if modified:
            INPUTS.restore(qkv)
            REFERENCES.clear()  # computed from the modified inputs
            pytest.fail(
                f"{self.test_id}: attention backend {backend.name!r} modified its input(s) {', '.join(modified)} in "
                "place: its timings and its output check ran on changing values. A backend must not write to q, "
                "k or v (work on a copy); the inputs were restored for the tests after it",
                pytrace=False,
            )

    def _inputs_do_not_fit(self, backend: Backend, qkv: InputsDoNotFit, run_mode: Mode) -> CaseResult:
        """The inputs could not be allocated: the case does not fit, decided by the gate as any other."""
        reason = backend.unsupported_reason(qkv.shape, self.info)
        if reason:
            pytest.skip(reason)
        result = self._new_result(backend.name, qkv.shape, run_mode)
        result.fits, result.reason = False, qkv.reason
        self._store(result)
        return result

    def check_output(self, backend: Backend, qkv: QKV) -> Equivalence:
        """Run one forward and compare it with the high-precision reference under the spec."""
        assert self.equivalence is not None
        q, k, v = qkv.in_layout(backend.layout)
        with torch.no_grad():
            raw = backend.run(q, k, v, qkv.shape)
        output = _canonical(_tensor_output(raw, backend), backend)
        reference, low = REFERENCES.get(qkv)
        return measure_equivalence(output, reference, low, self.equivalence)

    def measure_workload(
        self,
        workload: Callable[[], Any],
        *,
        name: str,
        flops: float | None = None,
        shape: dict[str, Any] | None = None,
        seqlen: int | None = None,
    ) -> CaseResult:
        """Time any callable (a transformers model step, a custom kernel) under the same gate."""
        if flops is not None and (
            isinstance(flops, bool) or not isinstance(flops, (int, float)) or not 0 < flops < math.inf
        ):
            raise ValueError(f"measure_workload(name={name!r}): flops must be a positive finite number or None, not {flops!r}")
        result = CaseResult(
            test_id=self.test_id,
            backend=name,
            device=self.info.name,
            device_slug=self.info.slug,
            device_id=self.info.device,
            mode=self.mode,
            shape=shape,
            seqlen=seqlen,
            environment=self.info.software(),
        )
        try:
            measurement = measure(workload, self.device, self.timing)
        except DoesNotFit as oom:
            result.fits, result.reason = False, str(oom)
            self._store(result)
            return result
        self._fill(result, measurement, flops)
        release_memory(self.device)
        self._store(result)
        return result

    # ------------------------------------------------------------ internals

    def _new_result(self, backend: str, shape: AttnShape, mode: Mode) -> CaseResult:
        return CaseResult(
            test_id=self.test_id,
            backend=backend,
            device=self.info.name,
            device_slug=self.info.slug,
            device_id=self.info.device,
            mode=mode,
            shape=shape.as_dict(),
            seqlen=shape.q_len,
            environment=self.info.software(),
        )

    def _fill(self, result: CaseResult, measurement: Measurement, flops: float | None) -> None:
        timing = measurement.timing
        result.median_ms, result.iqr_ms = timing.median_ms, timing.iqr_ms
        result.latency = {key: float(value) for key, value in timing.summary().items()}
        result.quantiles_ms = timing.quantiles(QUANTILE_COUNT)
        result.clock = timing.clock
        result.peak_bytes = measurement.peak_bytes
        if measurement.memory_note:
            result.reason = measurement.memory_note
        if flops:
            result.tflops = flops / (timing.median_ms * 1e-3) / 1e12
        if self.benchmark is not None:
            feed_samples(self.benchmark, timing.samples_ms, result)

    def _store(self, result: CaseResult) -> None:
        if self.result is not None:
            raise RuntimeError(
                f"{self.test_id} measured twice: one attnperf measurement per test (parametrize instead)"
            )
        self.result = result
        self.gate.finish(result)
