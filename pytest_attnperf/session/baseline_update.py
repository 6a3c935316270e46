"""Writing baselines at the end of a run: ``--attnperf-update`` (one run), the last of ``attnperf update --runs N``,
or the detection limits of ``attnperf calibrate``.

Everything comes from the results' records (device, GPU state, samples), so under pytest-xdist
the controller writes the baselines without touching a GPU. ``attnperf update --runs N`` runs N
pytest processes; runs 1..N-1 leave their results in the update's runs folder and run N merges
all N into one entry per test (:mod:`.gate.recording`); who may steer a run, and how a cancelled
update ends, is :mod:`.update_process`. An interrupted run, a cancelled update and a busy CPU
record nothing (:func:`update_refusal`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..gate.results import CaseRecord
from ..spec.device_info import SOFTWARE_KEYS
from .update_process import SteeringError, UpdateRun, run_file_name, update_run

if TYPE_CHECKING:
    from ..gate.baselines import BaselineEntry, Change
    from ..spec.settings import Settings


def run_position() -> tuple[int, int] | None:
    """(k, N) when this process is run k of a live `attnperf update --runs N`; None for a run of its own.

    Stray ATTNPERF_RUN* variables raise :class:`SteeringError` (the plugin refuses them at configure time).
    """
    run = update_run()
    return (run.index, run.total) if run else None


def update_refusal(
    settings: Settings, results: Sequence[CaseRecord], *, interrupted: bool, cpu_problems: Sequence[str]
) -> str | None:
    """Why this run must write no baseline at all, or None: interrupted, its update cancelled, a busy CPU."""
    if interrupted:
        return "interrupted: no baseline was written (part of a run is no baseline)"
    try:
        run = update_run()
    except SteeringError as error:
        return str(error)
    cancelled = run.cancelled() if run is not None else None
    if cancelled:
        return cancelled + ": no baseline was written"
    return busy_cpu_refusal(settings, results, cpu_problems)


def measured_on_cpu(results: Sequence[CaseRecord]) -> bool:
    return any((result.provenance.device_info or {}).get("device") == "cpu" for result in results)


def busy_cpu_refusal(settings: Settings, results: Sequence[CaseRecord], cpu_problems: Sequence[str]) -> str | None:
    """A contended CPU's medians are no baseline, unless --attnperf-allow-busy-cpu says to record them."""
    if settings.guard == "off" or not measured_on_cpu(results) or not cpu_problems or settings.allow_busy_cpu:
        return None
    return (
        "not recording baselines measured on a busy CPU: " + "; ".join(cpu_problems) + ". Record them on a quiet "
        "machine, or pass --attnperf-allow-busy-cpu (ini: attnperf_allow_busy_cpu = true) to record them anyway"
    )


def recordable(result: CaseRecord) -> bool:
    """Only outputs that agree with the reference, from tests that ran to the end, become baselines."""
    return result.measurement.equivalence_passed is not False and result.decision.outcome != "error"


def run_environment(software: dict[str, Any], plugin_version: str | None) -> dict[str, Any]:
    """What a baseline file records about the stack: versions, the plugin, the allocator settings."""
    return {
        **software,
        "pytest_attnperf": plugin_version,
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
    }


def _device_record(result: CaseRecord) -> dict[str, Any]:
    info = dict(result.provenance.device_info or {"name": result.identity.device, "slug": result.identity.device_slug})
    for key in ("device", "uuid", *SOFTWARE_KEYS):
        info.pop(key, None)
    return {"name": result.identity.device, "slug": result.identity.device_slug, **info}


def _earlier_runs(run: UpdateRun) -> list[list[CaseRecord]]:
    """Runs 1..k-1's records; one that does not read back as a record refuses the merge, naming its run file."""
    runs = []
    for index, records in enumerate(run.earlier_runs(), start=1):
        path = run.folder / run_file_name(index)
        try:
            results = [CaseRecord.from_dict(record) for record in records]
        except ValueError as error:
            raise SteeringError(f"{path} holds a record this run cannot read: {error}; nothing merged") from None
        seen: set[tuple[str, str]] = set()
        for result in results:  # a run measures a test once (case_runner.py refuses a second measurement)
            key = (result.identity.device_slug, result.identity.test_id)
            if key in seen:
                raise SteeringError(f"{path} holds {key[1]} twice; one run measures a test once: nothing merged")
            seen.add(key)
        runs.append(results)
    return runs


@dataclass(frozen=True)
class UpdateOutcome:
    """What writing the baselines did: the entries changed, what to tell, what failed (then the run fails)."""

    changes: tuple[Change, ...] = ()
    notes: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    failed: bool = False


def update_baselines(
    settings: Settings,
    results: Sequence[CaseRecord],
    baseline_path_of: Callable[[str], Path],
    *,
    interrupted: bool = False,
    cpu_problems: Sequence[str] = (),
) -> UpdateOutcome:
    """Write (or, for runs 1..N-1, keep for the last run) the baselines of this run's recordable results.

    ``baseline_path_of`` maps a device slug to its baseline file; ``interrupted`` and ``cpu_problems`` (a busy
    CPU, measure/cpu_load.py) can refuse the whole update (:func:`update_refusal`).
    """
    from ..gate.baselines import BaselineFileError, merge_entries, now_iso
    from ..gate.recording import entry_from_runs, runs_note

    refusal = update_refusal(settings, results, interrupted=interrupted, cpu_problems=cpu_problems)
    if refusal is not None:
        return UpdateOutcome(errors=(refusal,), failed=True)
    recordable_results = [result for result in results if recordable(result)]
    update = update_run()
    position = (update.index, update.total) if update else None
    if update is not None and not update.last:
        update.keep([json.loads(result.to_json()) for result in recordable_results])
        kept = f"run {update.index} of {update.total} measured; the baselines are written after run {update.total}"
        return UpdateOutcome(notes=(kept,))
    try:
        runs = (_earlier_runs(update) if update is not None else []) + [recordable_results]
    except SteeringError as error:
        return UpdateOutcome(errors=(str(error),), failed=True)
    grouped: dict[str, dict[str, list[CaseRecord]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for result in run:
            grouped[result.identity.device_slug][result.identity.test_id].append(result)
    recorded_at = now_iso()
    changes: list[Change] = []
    notes: list[str] = []
    errors: list[str] = []
    for slug, by_test in grouped.items():
        newest = by_test[next(reversed(by_test))][-1]
        environment = {
            **run_environment(dict(newest.provenance.environment), newest.provenance.plugin_version),
            "recorded_at": recorded_at,
            "command": "attnperf update --runs " + str(len(runs))
            if position
            else "pytest --attnperf --attnperf-update",
            "runs": len(runs),
        }
        states = (result.provenance.session_gpu_state for tests in by_test.values() for result in tests)
        gpu_state = next((state for state in states if state), None)
        if gpu_state is not None:
            environment["gpu_state"] = gpu_state
        entries = {test_id: entry_from_runs(tests, recorded_at) for test_id, tests in by_test.items()}
        for test_id, tests in by_test.items():
            note = runs_note(tests)
            if note:
                notes.append(f"{test_id.split('::', 1)[-1]}: {note}")
        try:
            written = merge_entries(baseline_path_of(slug), _device_record(newest), environment, entries)
        except (BaselineFileError, OSError, ValueError) as error:
            errors.append(str(error))
            continue
        changes.extend(written)
        errors.extend(f"{change.test_id}: not recorded: {change.refused}" for change in written if change.refused)
    return UpdateOutcome(tuple(changes), tuple(notes), tuple(errors), failed=bool(errors))


@dataclass(frozen=True)
class CalibrationOutcome:
    """What storing the detection limits did: a line per case, the files written, what failed."""

    lines: tuple[str, ...] = ()
    written: tuple[Path, ...] = ()
    errors: tuple[str, ...] = ()
    failed: bool = False  # a file could not be written (a baseline that cannot be read is said, not failed)


def write_detection_limits(
    results: Sequence[CaseRecord], baseline_path_of: Callable[[str], Path]
) -> CalibrationOutcome:
    """`attnperf calibrate`: store each case's measured detection limit in its baseline entry, and say it."""
    from ..gate.baselines import BaselineFileError, load_baseline, merge_entries
    from ..gate.identity import problem_differences

    lines: list[str] = []
    errors: list[str] = []
    written: list[Path] = []
    failed = False
    by_slug: dict[str, dict[str, BaselineEntry]] = defaultdict(dict)
    for result in results:
        calibration, identity = result.measurement.calibration, result.identity
        if not calibration:
            continue
        limit = calibration.get("detection_limit")
        name = identity.test_id.split("::", 1)[-1]
        levels = calibration.get("levels") or []
        tried = max((level["delivered"] for level in levels), default=0.0)
        if calibration.get("unchanged_fails"):
            lines.append(
                f"{name}: no detection limit: every trial failed with no slowdown delivered (the case fails its "
                "baseline unchanged: re-record it with `attnperf update` on a quiet machine)"
            )
            continue
        if limit is not None:
            line = f"{name}: detects >= {limit * 100:.1f} % (predicted from its spread: {calibration['predicted'] * 100:.1f} %)"
        elif tried > 0:
            line = f"{name}: not caught in every trial up to {tried * 100:.1f} % delivered"
        else:  # the injected work never showed above the run-to-run noise (a loaded CPU): no level was measured
            line = (
                f"{name}: no detection limit: no trial delivered a slowdown above the noise (the most was "
                f"{tried * 100:.1f} %): calibrate on a quiet machine"
            )
        lines.append(line)
        try:
            baseline = load_baseline(baseline_path_of(identity.device_slug))
        except BaselineFileError as error:
            errors.append(str(error))
            continue
        entry = baseline.entries.get(identity.test_id) if baseline else None
        problem = {"backend": identity.backend, "mode": identity.mode, "shape": identity.shape}
        if entry is None or problem_differences(entry.problem(), problem):
            lines.append(f"{name}: no baseline of this problem to store it in: run `attnperf update` first")
            continue
        by_slug[identity.device_slug][identity.test_id] = dataclasses.replace(entry, detection_limit=limit)
    for slug, entries in by_slug.items():
        path = baseline_path_of(slug)
        try:
            current = load_baseline(path)
            assert current is not None
            merge_entries(path, current.device, current.environment, entries)
        except (BaselineFileError, OSError, ValueError) as error:
            errors.append(str(error))
            failed = True
            continue
        written.append(path)
    return CalibrationOutcome(tuple(lines), tuple(written), tuple(errors), failed)


def run_update(
    runs: int, arguments: Sequence[str], *, run: Callable[..., int] | None = None, runs_dir: Path | None = None
) -> int:
    """`attnperf update --runs N`: N independent pytest processes, the last one merging all N into the baselines.

    Each run is a fresh process (its own allocator, compilation, clocks from rest), which is the
    point: the spread between them is what the gate's tolerance is made from. A run that ends
    with failed tests goes on (those cases are not recorded); one that cannot run stops the update.
    A signal (Ctrl-C, SIGTERM, SIGHUP) stops the running run's whole process group; nothing is
    merged after it (:mod:`.update_process`). The runs' results go to a private temporary folder,
    removed at the end, or to ``runs_dir``, which is kept: the same command given the same folder
    again skips the runs it finished (an update longer than one CI job's time limit).
    """
    import sys

    from . import update_process

    status = 0
    with update_process.cancellable(), update_process.runs_folder(runs, runs_dir) as folder:
        index = 0
        try:
            for index in range(1, runs + 1):
                if index < runs and folder.kept(index):
                    print(
                        f"attnperf update: run {index} of {runs}: kept in {folder.path} by an earlier call", flush=True
                    )
                    continue
                command = [
                    sys.executable,
                    "-m",
                    "pytest",
                    "--attnperf",
                    "--attnperf-update",
                    *per_run(arguments, index, runs),
                ]
                print(f"attnperf update: run {index} of {runs}: {' '.join(command[1:])}", flush=True)
                call = run or update_process.run_child
                code = int(call(command, env={**os.environ, **folder.environment(index, runs)}))
                if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
                    print(f"attnperf update: run {index} of {runs} ended with exit status {code}; nothing was merged")
                    return code
                status = max(status, code)
                if index < runs and not folder.kept(index):
                    print(
                        f"attnperf update: run {index} of {runs} kept no results (its output above says why, e.g. a "
                        "busy CPU); nothing was merged",
                        flush=True,
                    )
                    return max(code, int(pytest.ExitCode.TESTS_FAILED))
            folder.finished()
        except update_process.Cancelled as cancel:
            update_process.ignore_cancels()  # a second Ctrl-C must not interrupt the cleanup with a traceback
            name = signal_name(cancel.signum)
            merged = (
                f"the baselines stand as run {runs} left them: unchanged, or written whole if it had finished"
                if index == runs
                else "nothing was merged: the baselines are as they were"
            )
            kept = (
                f". The finished runs are kept in {folder.path}: the same command goes on from them"
                if folder.given and index > 1
                else ""
            )
            print(
                f"\nattnperf update: stopped by {name} during run {index} of {runs}; its processes are ended, "
                f"{merged}{kept}",
                file=sys.stderr,
                flush=True,
            )
            return 128 + cancel.signum
    return status


def signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def per_run(arguments: Sequence[str], index: int, runs: int) -> list[str]:
    """The arguments of run ``index``: a JSON report path gets the run's number (report.json -> report-run2.json),
    so each independent run's samples and clocks are kept."""
    if runs == 1:
        return list(arguments)
    out, follows = [], False
    for argument in arguments:
        if follows or argument.startswith("--attnperf-json="):
            prefix = "" if follows else "--attnperf-json="
            path = Path(argument.removeprefix(prefix))
            argument = prefix + str(path.with_name(f"{path.stem}-run{index}{path.suffix}"))
        follows = argument == "--attnperf-json"
        out.append(argument)
    return out
