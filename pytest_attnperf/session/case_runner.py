"""Running one case: backend + seeded inputs -> measurement, output check and a CaseRecord.

The ``attnperf`` fixture hands tests an :class:`AttnPerf`; the verdict is decided by the
:class:`Gate` it is given (the session's), from what this records.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pytest
import torch

from ..backends.registry import Backend, Unsupported
from ..gate.results import CaseIdentity, CaseRecord, Provenance
from ..integrations.pytest_benchmark import feed_samples
from ..measure.case import CaseMeasurement, does_not_fit, measure_case
from ..measure.equivalence import Equivalence, measure_equivalence
from ..measure.input_guard import InputGuard
from ..measure.inputs import QKV, seeded_normal, torch_dtype
from ..measure.memory import DoesNotFit, InputsDoNotFit, Workload, describe_error, is_out_of_memory, release_memory
from ..measure.reference import reference_output
from ..measure.sampling import PRECISION
from ..measure.timing import NotCapturable
from ..spec.device_info import DeviceInfo
from ..spec.marks import EquivalenceSpec
from ..spec.option_values import parse_mode
from ..spec.options import TimingConfig
from ..spec.shapes import Mode
from ..spec.workloads import TRAINABLE_WORKLOADS

if TYPE_CHECKING:
    from .calibration import Calibration


class Gate(Protocol):
    """What decides a case: may ask for another measurement, then fails, skips or defers the test."""

    fingerprint: bool  # whether to record which kernels ran

    def again(self, result: CaseRecord) -> CaseRecord | None:
        """When this measurement is still ambiguous and one more must decide (after a cool-down): the record with
        this measurement's stage, which the next measurement continues; None when this one decides."""

    def finish(self, result: CaseRecord, on_final: Callable[[], None] | None) -> CaseRecord:
        """Decide the verdict now (pytest.fail / pytest.skip), so a regression fails its own test; call
        ``on_final`` first unless the verdict is deferred to the session's end (the re-run reports instead).
        Returns the case's record: the measurement with the decision."""

    def calibration(self) -> Calibration | None:
        """When measuring the detection limit (attnperf calibrate): what to judge trials against."""

    def power_window(self, median_ms: float) -> str | None:
        """None to measure the case's mean power while running (a kernel of ``median_ms``); else why not."""


class ReferenceCache:
    """The high- and input-precision references of the last shape, shared by every backend of it."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._value: tuple[torch.Tensor, torch.Tensor] | None = None
        self.computed_ms = 0.0  # what the last get() spent computing (0 when it reused the references)

    def get(self, qkv: QKV) -> tuple[torch.Tensor, torch.Tensor]:
        key = (qkv.shape, qkv.seed, str(qkv.device))
        self.computed_ms = 0.0
        if self._key != key or self._value is None:
            self.clear()
            started = time.perf_counter()
            # fp32 inputs need a float64 reference, or the input-dtype reference would equal it.
            low_dtype = torch_dtype(qkv.shape.dtype)
            high = torch.float64 if low_dtype == torch.float32 else torch.float32
            self._key, self._value = key, (reference_output(qkv, high), reference_output(qkv, low_dtype))
            if qkv.device.type == "cuda":
                torch.cuda.synchronize(qkv.device)  # so the time is the references', not the next step's
            self.computed_ms = (time.perf_counter() - started) * 1e3
        return self._value

    def clear(self) -> None:
        self._key, self._value = None, None


@functools.cache  # importlib.metadata scans sys.path: 255 calls cost 1.5 s of an H100 suite run (its profile)
def plugin_version() -> str:
    try:
        return importlib.metadata.version("pytest-attnperf")
    except importlib.metadata.PackageNotFoundError:
        from .. import __version__

        return __version__


def timing_settings(config: TimingConfig, reference_policy: str = "periodic") -> dict[str, Any]:
    """The timing settings a baseline records (a change of method is named when it gates)."""
    return {
        "warmup": "steady",
        "warmup_cap_ms": config.warmup_ms,
        "rep_ms": config.rep_ms,
        "min_samples": config.min_samples,
        "max_samples": config.max_samples,
        "median_precision": PRECISION,  # sampling stops once the median's 95 % interval is within this
        "flush_l2": config.flush_l2,
        "cuda_graph": config.cuda_graph,
        "machine_reference": reference_policy,  # when the machine reference was read: a verdict compares like ones
    }


def _tensor_output(raw: Any, backend: Backend) -> torch.Tensor:
    """A backend's output, which must be a tensor: anything else is named, with the backend."""
    if not isinstance(raw, torch.Tensor):
        raise TypeError(f"attention backend {backend.name!r} returned {type(raw).__name__}, expected a torch.Tensor")
    return raw


def _graph_to_differentiate(
    backend: Backend, arguments: tuple[Any, ...], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward kept for autograd, and the seeded gradient of its output; out of memory -> DoesNotFit.

    It runs before measure() does, so an out-of-memory here must become "does not fit" here too.
    """
    failure = None
    try:
        first_output = _tensor_output(backend.run(*arguments), backend)
        grad_output = seeded_normal(
            tuple(first_output.shape), seed=seed, stream=3, dtype=first_output.dtype, device=first_output.device
        )
        return first_output, grad_output
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        failure = describe_error(error)
    release_memory(
        arguments[0].device, thorough=True
    )  # outside the except block: its traceback no longer holds the tensors
    raise DoesNotFit(failure)


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
    first_output, grad_output = _graph_to_differentiate(backend, (*leaves, *rest), qkv.seed)
    if mode == "backward":
        # The graph of one forward is kept and differentiated again and again.
        return functools.partial(torch.autograd.grad, first_output, leaves, grad_output, retain_graph=True)
    del first_output

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(backend.run(q_leaf, k_leaf, v_leaf, *rest), leaves, grad_output)

    return forward_backward


def recorded(record: CaseRecord, measured: CaseMeasurement, **more: Any) -> CaseRecord:
    """``record`` (its identity, and its stages so far) with this measurement's numbers: a new record."""
    return record.with_fields(**measured.record_fields(), **more)


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
    references: ReferenceCache  # the run's: shared by the backends of one shape, cleared between modules
    input_guard: InputGuard  # the run's: the pristine state of the inputs every backend is handed
    benchmark: Any = None  # pytest-benchmark's fixture, when its output was asked for
    gpu_state: dict[str, Any] | None = None  # this process's GPU state at session start
    reference_policy: str = "periodic"  # when the machine reference is read (--attnperf-machine-reference)
    result: CaseRecord | None = None

    def measure(self, backend: Backend, qkv: QKV | InputsDoNotFit, *, mode: Mode | None = None) -> CaseRecord:
        """Time ``backend`` on ``qkv``, measure its peak memory, check its output; skip if unsupported."""
        run_mode: Mode = parse_mode(mode) if mode is not None else self.mode  # type: ignore[assignment]
        if isinstance(qkv, InputsDoNotFit):
            return self._inputs_do_not_fit(backend, qkv, run_mode)
        shape = qkv.shape
        reason = backend.unsupported_reason(shape, self.info)
        if reason:
            pytest.skip(reason)
        # Checked (and the layout copies made) only for a backend that runs: a skipped one costs nothing.
        if self.input_guard.prepare(qkv, backend.layout):  # an earlier backend changed them (its test failed first)
            self.references.clear()
        identity = self._new_result(backend.name, shape.as_dict(), run_mode, shape.context_len)
        flops = shape.flops(run_mode)
        moved = shape.bytes_moved() if run_mode == "forward" else None
        try:
            workload = make_workload(backend, qkv, run_mode)
            measured = measure_case(
                workload,
                self.device,
                self.timing,
                flops=flops,
                bytes_moved=moved,
                free_caches=lambda: self._free_caches(qkv.release_layouts),
                power_skip=self.gate.power_window,
                reference_policy=self.reference_policy,
            )
        except (Unsupported, NotCapturable) as unsupported:
            pytest.skip(str(unsupported))
        except DoesNotFit as oom:  # the graph to differentiate did not fit
            measured = does_not_fit(str(oom))
        if not measured.fits:
            qkv.release_layouts()
            return self._store(recorded(identity, measured))
        result, measured = self._after_timing(identity, measured, workload, flops, torch_dtype(shape.dtype), moved)
        if self.equivalence is not None:
            started = time.perf_counter()
            equivalence = self.check_output(backend, qkv)
            # The references (computed by the problem's first backend that runs, reused by the rest) apart
            # from this backend's forward and the comparison: the cost report names each.
            if self.references.computed_ms:
                measured = measured.with_phase("reference", self.references.computed_ms)
            elapsed_ms = (time.perf_counter() - started) * 1e3 - self.references.computed_ms
            measured = dataclasses.replace(measured, equivalence=equivalence).with_phase("equivalence", elapsed_ms)
            result = recorded(result, measured)
        del workload
        self._refuse_modified_inputs(backend, qkv)
        qkv.release_layouts()
        release_memory(self.device)
        return self._store(result)

    def _refuse_modified_inputs(self, backend: Backend, qkv: QKV) -> None:
        modified = self.input_guard.modified(qkv, backend.layout)
        if modified:
            self.input_guard.restore(qkv)
            self.references.clear()  # computed from the modified inputs
            pytest.fail(
                f"{self.test_id}: attention backend {backend.name!r} modified its input(s) {', '.join(modified)} in "
                "place: its timings and its output check ran on changing values. A backend must not write to q, "
                "k or v (work on a copy); the inputs were restored for the tests after it",
                pytrace=False,
            )

    def _inputs_do_not_fit(self, backend: Backend, qkv: InputsDoNotFit, run_mode: Mode) -> CaseRecord:
        """The inputs could not be allocated: the case does not fit, decided by the gate as any other."""
        reason = backend.unsupported_reason(qkv.shape, self.info)
        if reason:
            pytest.skip(reason)
        identity = self._new_result(backend.name, qkv.shape.as_dict(), run_mode, qkv.shape.context_len)
        return self._store(recorded(identity, does_not_fit(qkv.reason)))

    def check_output(self, backend: Backend, qkv: QKV) -> Equivalence:
        """Run one forward and compare it with the high-precision reference under the spec."""
        assert self.equivalence is not None
        with torch.no_grad():
            raw = backend.run(*qkv.call_arguments(backend.layout))
        output = qkv.canonical_output(_tensor_output(raw, backend), backend.layout)
        reference, low = self.references.get(qkv)
        return measure_equivalence(output, reference, low, self.equivalence)

    def measure_workload(
        self,
        workload: Callable[[], Any],
        *,
        name: str,
        flops: float | None = None,
        shape: dict[str, Any] | None = None,
        seqlen: int | None = None,
    ) -> CaseRecord:
        """Time any callable (a transformers model step, a custom kernel) under the same gate."""
        if flops is not None and (
            isinstance(flops, bool) or not isinstance(flops, (int, float)) or not 0 < flops < math.inf
        ):
            raise ValueError(
                f"measure_workload(name={name!r}): flops must be a positive finite number or None, not {flops!r}"
            )
        identity = self._new_result(name, shape, self.mode, seqlen)
        measured = measure_case(
            workload,
            self.device,
            self.timing,
            flops=flops,
            free_caches=self._free_caches,
            power_skip=self.gate.power_window,
            reference_policy=self.reference_policy,
        )
        if not measured.fits:
            return self._store(recorded(identity, measured))
        result, _ = self._after_timing(identity, measured, workload, flops, None)
        release_memory(self.device)
        return self._store(result)

    # ------------------------------------------------------------ internals

    def _new_result(self, backend: str, shape: dict[str, Any] | None, mode: Mode, seqlen: int | None) -> CaseRecord:
        return CaseRecord(
            identity=CaseIdentity(
                test_id=self.test_id,
                backend=backend,
                device=self.info.name,
                device_slug=self.info.slug,
                device_id=self.info.device,
                mode=mode,
                shape=shape,
                seqlen=seqlen,
            ),
            provenance=Provenance(
                environment=self.info.software(),
                device_info=self.info.as_dict(),
                session_gpu_state=self.gpu_state,
                plugin_version=plugin_version(),
                timing_settings=timing_settings(self.timing, self.reference_policy),
            ),
        )

    def _free_caches(self, release_inputs: Callable[[], None] = lambda: None) -> None:
        """What this case may free before its out-of-memory is retried: the references, the inputs' copies."""
        self.references.clear()
        release_inputs()

    def _after_timing(
        self,
        identity: CaseRecord,
        measured: CaseMeasurement,
        workload: Workload,
        flops: float | None,
        dtype: Any,
        bytes_moved: int | None = None,
    ) -> tuple[CaseRecord, CaseMeasurement]:
        """The dispatch fingerprint (after all timing), ambiguous re-measurements, and calibration if asked."""
        if self.gate.fingerprint:
            from ..measure.fingerprint import capture

            started = time.perf_counter()
            measured = dataclasses.replace(measured, fingerprint=capture(workload, self.device))
            measured = measured.with_phase("fingerprint", (time.perf_counter() - started) * 1e3)
        result = recorded(identity, measured)
        while (staged := self.gate.again(result)) is not None:
            again = measure_case(
                workload,
                self.device,
                self.timing,
                flops=flops,
                bytes_moved=bytes_moved,
                power_skip=self.gate.power_window,
                reference_policy=self.reference_policy,
            )
            measured = measured.followed_by(again)
            first_median_ms = staged.measurement.first_median_ms or result.measurement.median_ms
            result = recorded(staged, measured, first_median_ms=first_median_ms)
        calibration = self.gate.calibration()
        if calibration is not None and result.measurement.median_ms is not None:
            from .calibration import calibrate_case

            def trial(slowed: Workload) -> CaseRecord:
                slowed_measurement = measure_case(  # a trial's power: read by none
                    slowed, self.device, self.timing, reference_policy=self.reference_policy
                )
                if not slowed_measurement.fits:
                    raise DoesNotFit(slowed_measurement.reason or "out of memory")
                return recorded(
                    self._new_result(
                        identity.identity.backend or "-", identity.identity.shape, self.mode, identity.identity.seqlen
                    ),
                    slowed_measurement,
                )

            result = result.with_fields(
                calibration=calibrate_case(calibration, result, workload, trial, self.device, dtype)
            )
        return result, measured

    def _store(self, result: CaseRecord) -> CaseRecord:
        """Hand the measurement to the gate; the decided record is what the test gets back."""
        if self.result is not None:
            raise RuntimeError(
                f"{self.test_id} measured twice: one attnperf measurement per test (parametrize instead)"
            )
        self.result = result
        benchmark = self.benchmark
        if benchmark is not None and result.measurement.samples_ms and result.measurement.median_ms is not None:
            samples = tuple(result.measurement.samples_ms)
            self.result = self.gate.finish(result, lambda: feed_samples(benchmark, samples, result))
        else:
            self.result = self.gate.finish(result, None)
        return self.result
