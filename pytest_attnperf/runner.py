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
from .measure.bandwidth import copy_bandwidth_gbps
from .measure.equivalence import Equivalence, describe_mismatch, measure_equivalence
from .measure.inputs import QKV, seeded_normal, torch_dtype
from .measure.measurement import Measurement, measure
from .measure.memory import DoesNotFit, release_memory
from .measure.reference import reference_output
from .measure.timing import NotCapturable
from .spec.device_info import DeviceInfo
from .spec.marks import EquivalenceSpec
from .spec.options import TimingConfig
from .spec.shapes import AttnShape, Mode
from .spec.workloads import TRAINABLE_WORKLOADS


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
            # fp32 inputs need a float64 reference, or the input-dtype reference would equal it.
            low_dtype = torch_dtype(qkv.shape.dtype)
            high = torch.float64 if low_dtype == torch.float32 else torch.float32
            self._key, self._value = key, (reference_output(qkv, high), reference_output(qkv, low_dtype))
        return self._value

    def clear(self) -> None:
        self._key, self._value = None, None


REFERENCES = ReferenceCache()


def make_workload(backend: Backend, qkv: QKV, mode: Mode) -> Callable[[], Any]:
    """A no-argument callable doing one forward, backward or forward+backward of ``backend``."""
    arguments = qkv.call_arguments(backend.layout)
    if mode == "forward":

        def forward() -> torch.Tensor:
            with torch.no_grad():
                return backend.run(*arguments)

        return forward
    if qkv.shape.workload not in TRAINABLE_WORKLOADS:
        raise Unsupported(
            f"mode {mode!r} times a training step; the {qkv.shape.workload} workload is inference, timed forward only"
        )
    q_leaf, k_leaf, v_leaf = (t.detach().requires_grad_(True) for t in arguments[:3])
    leaves = (q_leaf, k_leaf, v_leaf)
    rest = arguments[3:]
    first_output = backend.run(q_leaf, k_leaf, v_leaf, *rest)
    grad_output = seeded_normal(
        tuple(first_output.shape), seed=qkv.seed, stream=3, dtype=first_output.dtype, device=first_output.device
    )
    if mode == "backward":
        # The graph of one forward is kept and differentiated again and again.
        return functools.partial(torch.autograd.grad, first_output, leaves, grad_output, retain_graph=True)
    del first_output

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(backend.run(q_leaf, k_leaf, v_leaf, *rest), leaves, grad_output)

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

    def measure(self, backend: Backend, qkv: QKV, *, mode: Mode | None = None) -> CaseResult:
        """Time ``backend`` on ``qkv``, measure its peak memory, check its output; skip if unsupported."""
        run_mode: Mode = mode or self.mode
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
        moved = shape.bytes_moved() if run_mode == "forward" else None
        self._fill(result, measurement, shape.flops(run_mode), moved)
        del measurement
        if self.gate.suspect(result):
            # A suspected regression is measured again; the second, independent run decides.
            first_median = result.median_ms
            self._fill(
                result,
                measure(make_workload(backend, qkv, run_mode), self.device, self.timing),
                shape.flops(run_mode),
                moved,
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
        qkv.release_layouts()
        release_memory(self.device)
        self._store(result)
        return result

    def check_output(self, backend: Backend, qkv: QKV) -> Equivalence:
        """Run one forward and compare it with the high-precision reference under the spec."""
        assert self.equivalence is not None
        with torch.no_grad():
            raw = backend.run(*qkv.call_arguments(backend.layout))
        if not isinstance(raw, torch.Tensor):
            raise TypeError(
                f"attention backend {backend.name!r} returned {type(raw).__name__}, expected a torch.Tensor"
            )
        output = qkv.canonical_output(raw, backend.layout)
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
            seqlen=shape.context_len,
            environment=self.info.software(),
        )

    def _fill(
        self, result: CaseResult, measurement: Measurement, flops: float | None, bytes_moved: int | None = None
    ) -> None:
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
        if bytes_moved:
            # What bounds decode: bytes over time, and the share of this device's measured copy bandwidth.
            result.bytes_moved = bytes_moved
            result.gbps = bytes_moved / (timing.median_ms * 1e-3) / 1e9
            ceiling = copy_bandwidth_gbps(str(self.device))
            result.bandwidth_share = result.gbps / ceiling if ceiling else None
        if self.benchmark is not None:
            feed_samples(self.benchmark, timing.samples_ms, result)

    def _store(self, result: CaseResult) -> None:
        if self.result is not None:
            raise RuntimeError(
                f"{self.test_id} measured twice: one attnperf measurement per test (parametrize instead)"
            )
        self.result = result
        self.gate.finish(result)
