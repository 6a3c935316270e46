"""The state of one pytest-attnperf run: settings, device, baselines, results, baseline updates.

Made at configure time for every pytest run, so it imports no torch: the device is resolved,
and the measuring modules imported, only when a run measures (``--attnperf``) or a plugin
fixture asks for the device.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .cost import RunCost

if TYPE_CHECKING:
    import torch

    from ..gate.baselines import BaselineEntry, BaselineFile
    from ..gate.results import CaseRecord
    from ..measure.guards import GpuState
    from ..measure.input_guard import InputGuard
    from ..measure.inputs import QKV
    from ..spec.device_info import DeviceInfo
    from ..spec.settings import Settings
    from ..spec.shapes import AttnShape
    from .case_runner import ReferenceCache
    from .end import RunEnd
    from .report import RunReport

SESSION_KEY = pytest.StashKey["AttnPerfSession"]()


def session_of(config: pytest.Config) -> AttnPerfSession:
    """The run state of this pytest session (made by the plugin at configure time)."""
    return config.stash[SESSION_KEY]


def worker_device(spec: str, gpu_count: int) -> str:
    """Under pytest-xdist, 'auto' binds worker gwN to GPU N (one timing process per GPU)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if spec != "auto" or not worker.startswith("gw") or gpu_count == 0:
        return spec
    index = int(worker[2:])
    if index >= gpu_count and os.environ.get("ATTNPERF_SHARE_GPUS") != "1":
        raise ValueError(
            f"pytest-xdist worker {worker} has no GPU of its own: this host has {gpu_count} GPU(s). Use -n {gpu_count} "
            "(or -n auto, which pytest-attnperf caps at the GPU count), or set ATTNPERF_SHARE_GPUS=1 to time "
            "several workers on one GPU, which makes their timings interfere"
        )
    return f"cuda:{index % gpu_count}"


class AttnPerfSession:
    """Everything one run knows; hooks and fixtures read it, plain functions do the work."""

    def __init__(self, settings: Settings, *, is_worker: bool, distributing: bool = False) -> None:
        self.settings = settings
        self.is_worker = is_worker
        self.distributing = distributing
        self._device: torch.device | None = None
        self._baselines: dict[str, BaselineFile | None] = {}
        self.results: list[CaseRecord] = []
        self.end: RunEnd | None = None  # what the end of the run did (end.finish_run), for the report
        self.gpu_state: GpuState | None = None
        self.guard_problems: list[str] = []
        self.cpu_problems: list[str] = []  # a busy CPU (measure/cpu_load.py): warned, and no baseline is recorded
        self.deferrer: Any = None  # the Deferrer of a gating run (see deferral.py)
        self._inputs_key: tuple[Any, ...] | None = None
        self._inputs: QKV | None = None
        self._references: ReferenceCache | None = None
        self._input_guard: InputGuard | None = None
        self.cost = RunCost()  # the run's timestamps and compile cache, for the JSON report

    # ------------------------------------------------------------ device

    @property
    def device(self) -> torch.device:
        if self._device is None:
            import torch

            from ..measure.device import resolve_device

            gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            self._device = resolve_device(worker_device(self.settings.device, gpu_count))
            if self._device.type == "cuda":
                torch.cuda.set_device(self._device)
        return self._device

    @property
    def info(self) -> DeviceInfo:
        from ..measure.device import describe_device

        return describe_device(self.device)

    @property
    def is_cuda(self) -> bool:
        """Whether this run measures on a GPU (False when not enabled: nothing is probed then)."""
        return self.settings.enabled and self.device.type == "cuda"

    def start(self) -> None:
        """Resolve the device, load its baseline file (a bad one raises), bring the GPU to speed."""
        from ..measure.guards import read_gpu_state, state_problems
        from ..measure.known_noise import import_quietly

        import_quietly()  # torch modules that warn about themselves at import, imported now with that one filtered
        self.settings.shape_defaults(self.is_cuda)  # --attnperf-kv-heads against this device's default heads
        self.baseline_for(self.info.slug)
        if self.device.type == "cuda":
            from ..measure.machine_reference import refresh
            from ..measure.timing import spin_up

            self.gpu_state = read_gpu_state(self.device)  # before our own load, which throttles by design
            spin_up(self.device)
            refresh(self.device)  # the machine reference at session start (gate/machine.py)
        if self.settings.guard != "off":
            baseline = self.baseline_for(self.info.slug)
            recorded = baseline.environment.get("gpu_state") if baseline else None
            self.guard_problems = state_problems(self.gpu_state, recorded if isinstance(recorded, dict) else None)
            if self.guard_problems and self.settings.guard == "refuse":
                raise ValueError(
                    "refusing to time on this GPU (--attnperf-guard=refuse): " + "; ".join(self.guard_problems)
                )
        if self.device.type == "cpu" and self.settings.guard != "off":
            from ..measure.cpu_load import cpu_contention

            self.cpu_problems = [f"at the start: {problem}" for problem in cpu_contention()]
            if self.cpu_problems and self.settings.guard == "refuse":
                raise ValueError(
                    "refusing to time on a busy CPU (--attnperf-guard=refuse): " + "; ".join(self.cpu_problems)
                )

    # ------------------------------------------------------------ baselines

    def baseline_path(self, slug: str | None = None) -> Path:
        from ..gate.baselines import baseline_path

        return baseline_path(self.settings.baselines_dir, slug or self.info.slug)

    def baseline_for(self, slug: str) -> BaselineFile | None:
        if slug not in self._baselines:
            from ..gate.baselines import load_baseline

            self._baselines[slug] = load_baseline(self.baseline_path(slug))
        return self._baselines[slug]

    def baseline_entry(self, test_id: str) -> BaselineEntry | None:
        baseline = self.baseline_for(self.info.slug)
        return baseline.entries.get(test_id) if baseline else None

    def baseline_file_label(self, slug: str | None = None) -> str:
        path = self.baseline_path(slug)
        try:
            return os.path.relpath(path)
        except ValueError:
            return str(path)

    def baseline_status(self) -> str:
        baseline = self.baseline_for(self.info.slug)
        if baseline is None:
            return f"no baseline file for this {'GPU' if self.info.is_cuda else 'CPU'} yet"
        recorded = baseline.environment.get("recorded_at", "?")
        return f"{len(baseline.entries)} entries, last recorded {recorded}"

    def environment_changes(self) -> tuple[str, ...]:
        """Versions (the plugin's too) that differ from the ones the baseline file was recorded with."""
        from .baseline_update import run_environment
        from .case_runner import plugin_version

        baseline = self.baseline_for(self.info.slug)
        if baseline is None:
            return ()
        changes = []
        for key, value in run_environment(self.info.software(), plugin_version()).items():
            recorded = baseline.environment.get(key)
            if key in baseline.environment and recorded != value:
                changes.append(f"{key} {recorded} -> {value}")
        return tuple(changes)

    def gpu_state_record(self) -> dict[str, Any] | None:
        """This process's GPU state at session start, as the results carry it."""
        return self.gpu_state.as_dict() if self.gpu_state is not None else None

    def cool_down(self) -> None:
        """Before a re-measurement: wait (at most 2 s) until the GPU is back near its session-start temperature."""
        if self._device is None or self._device.type != "cuda":
            return
        from ..measure.nvml import nvml_for

        nvml = nvml_for(self._device)
        if nvml is not None:
            nvml.cool_down(self.gpu_state.temperature_c if self.gpu_state and self.gpu_state.temperature_c else None)

    # ------------------------------------------------------------ inputs

    def inputs(self, shape: AttnShape, make: Callable[[], QKV]) -> QKV:
        """Seeded inputs, reused while consecutive tests share a shape (backends of one case)."""
        key = (shape, self.settings.seed, str(self.device))
        if self._inputs_key != key or self._inputs is None:
            self._inputs = None  # free the previous tensors before making the next
            self._inputs = make()
            self._inputs_key = key
        return self._inputs

    @property
    def references(self) -> ReferenceCache:
        """The reference outputs of the current shape, shared by every backend of it (made on first use: torch)."""
        if self._references is None:
            from .case_runner import ReferenceCache

            self._references = ReferenceCache()
        return self._references

    @property
    def input_guard(self) -> InputGuard:
        """The pristine state of the inputs in use, so a backend that writes to them is caught."""
        if self._input_guard is None:
            from ..measure.input_guard import InputGuard

            self._input_guard = InputGuard()
        return self._input_guard

    # ------------------------------------------------------------ results and updates

    def release_caches(self) -> None:
        """Free the inputs and references kept for the next case; forget torch.compile's shape history."""
        self._inputs, self._inputs_key = None, None
        if self._device is None:
            return  # nothing was measured in this process
        from ..backends.builtin import forget_compiled_kernels
        from ..measure.memory import release_memory

        if self._references is not None:
            self._references.clear()
        if "torch._dynamo" in sys.modules:
            # Dynamo remembers the shapes each function was compiled for: after a module compiled
            # flex_attention for several static shapes, the next module's compile of the same function
            # (transformers' flex path) was made shape-dynamic - 2.5x slower decode on the H100, and
            # an Inductor C++ compile error on the CPU. Each test module starts from a clean slate.
            sys.modules["torch._dynamo"].reset()
            forget_compiled_kernels()
        release_memory(self._device, thorough=True)

    def add_result(self, result: CaseRecord) -> None:
        self.results.append(result)

    def report(self, end: RunEnd | None = None) -> RunReport:
        """What this run has to show, for the terminal summary and the report files (``end``: so far)."""
        from .end import RunEnd
        from .report import RunReport

        end = end if end is not None else (self.end or RunEnd())
        measured = self._device is not None or not self.distributing
        return RunReport(
            settings=self.settings,
            results=self.results,
            device=self.info.as_dict() if measured else self._result_device(),
            baseline_label=self.baseline_file_label() if measured else str(self.settings.baselines_dir),
            environment_changes=self.environment_changes() if measured else (),
            guard_problems=self.guard_problems,
            cpu_problems=self.cpu_problems,
            changes=list(end.changes),
            update_errors=list(end.update_errors),
            written_paths=list(end.written_paths),
            update_notes=list(end.update_notes),
            calibration_lines=list(end.calibration_lines),
            output_errors=list(end.output_errors),
            cost=self.cost.record(),
        )

    def _result_device(self) -> dict[str, Any]:
        """The controller's report under pytest-xdist: the workers' device records, never a GPU of its own."""
        names = ", ".join(sorted({result.identity.device for result in self.results})) or "no device"
        records = [result.provenance.device_info for result in self.results if result.provenance.device_info]
        same_model = len({result.identity.device_slug for result in self.results}) == 1
        return {**records[0], "device": "pytest-xdist workers"} if records and same_model else {"name": names}

    def finish(self, session: pytest.Session) -> None:
        """The end of the run (end.finish_run), and the exit status it asks for: the one place it is set."""
        from .end import finish_run

        if self.settings.update:
            self.cpu_problems += self._cpu_problems_at_end()
        self.end = finish_run(
            self.settings,
            self.results,
            baseline_path_of=self.baseline_path,
            report_of=self.report,
            write_study=self._write_study,
            interrupted=session.exitstatus == pytest.ExitCode.INTERRUPTED,
            cpu_problems=self.cpu_problems,
        )
        if self.end.failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _cpu_problems_at_end(self) -> list[str]:
        """A busy CPU checked again before recording: the start's check saw only the start (and the xdist
        controller measured nothing)."""
        from .baseline_update import measured_on_cpu

        if self.settings.guard == "off" or not measured_on_cpu(self.results):
            return []
        from ..measure.cpu_load import cpu_contention

        return [f"at the end: {problem}" for problem in cpu_contention()]

    def _write_study(self, out_dir: Path) -> list[Path]:
        """--attnperf-report: the study for this device, with this run's backends, lengths and timing."""
        from ..study.decode_plan import CPU_DECODE, GPU_DECODE
        from ..study.output import plots_available, write_study
        from ..study.runner import CPU_CONFIGS, GPU_CONFIGS, run_study, stderr_progress

        study = run_study(
            self.device,
            self.info,
            configs=GPU_CONFIGS if self.is_cuda else CPU_CONFIGS,
            seqlens=self.settings.seqlens_for(self.is_cuda),
            backends=self.settings.backends,
            timing=self.settings.timing,
            seed=self.settings.seed,
            decode=GPU_DECODE if self.is_cuda else CPU_DECODE,
            command="pytest --attnperf --attnperf-report",
            progress=stderr_progress(),
        )
        return write_study(study, out_dir, plots=plots_available())
