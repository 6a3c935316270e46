"""A cancelled `attnperf update` leaves no process and no baseline behind; only it steers its runs; a held
baseline lock is waited for with a word and given up on; an interrupted or busy-CPU run records nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fast_run import CPU, FAST_OPTIONS

from pytest_attnperf.gate.baselines import BaselineFileError, lock_holder, locked
from pytest_attnperf.measure import cpu_load
from pytest_attnperf.measure.cpu_load import CpuLoad, contention_problems
from pytest_attnperf.session.update_process import (
    PIPE_ENV,
    RUN_ENV,
    RUNS_DIR_ENV,
    TOKEN_ENV,
    SteeringError,
    UpdateRun,
    runs_folder,
    update_run,
)

BUSY = ("--attnperf-allow-busy-cpu",)
OPTIONS = tuple(option for option in FAST_OPTIONS if option not in BUSY)
GATED = """
import os, time, pathlib, pytest

@pytest.mark.attnperf_latency()
def test_gate(attnperf, attn_backend, qkv):
    attnperf.measure(attn_backend, qkv)

def test_wait():
    if os.environ.get("ATTNPERF_RUN", "").startswith("2/"):
        pathlib.Path("marker.json").write_text(
            '{"pid": %d, "folder": "%s"}' % (os.getpid(), os.environ["ATTNPERF_RUNS_DIR"])
        )
        time.sleep(8)  # long enough to be killed in; an orphan would go on and merge after it
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(predicate: object, limit_s: float = 300.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.1)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "test_gate.py").write_text(GATED, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return tmp_path


# ---------------------------------------------------------------- a killed update (real processes)


@pytest.mark.slow  # a subprocess run of many seconds: the slow part of CI
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_update_leaves_no_process_no_runs_folder_and_no_baseline(project: Path, signum: int) -> None:
    main = "import sys; from pytest_attnperf.cli import main; sys.exit(main())"
    command = [sys.executable, "-c", main, "update", "--runs", "2", *FAST_OPTIONS]
    parent = subprocess.Popen(
        command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        marker = project / "marker.json"
        _wait_for(lambda: marker.exists() and marker.read_text().endswith("}"))
        child = json.loads(marker.read_text())
        assert Path(child["folder"], "run-1.json").exists()  # run 1 kept its results for run 2
        os.kill(parent.pid, signum)
        output = parent.communicate(timeout=120)[0].decode()
        _wait_for(lambda: not _alive(child["pid"]), 60)
        _wait_for(lambda: not Path(child["folder"]).exists(), 30)
        time.sleep(9)  # past the test's sleep: an orphan would merge now
        assert not (project / "baselines" / f"{CPU.slug}.yaml").exists(), output
        if signum == signal.SIGTERM:
            assert parent.returncode == 128 + signal.SIGTERM
            assert "stopped by SIGTERM during run 2 of 2; its processes are ended" in output
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)


# ---------------------------------------------------------------- who steers a run


def _write_baseline_free_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=GATED.replace("def test_wait", "def _not_a_test"))
    pytester.makeini("[pytest]\n")


@pytest.mark.parametrize("position", ["1/2", "2/2"])
def test_stray_update_variables_are_refused_and_nothing_is_written(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, position: str
) -> None:
    _write_baseline_free_project(pytester)
    stale = pytester.path / "run-1.json"
    stale.write_text(json.dumps([{"median_ms": 1000.0}]), encoding="utf-8")
    monkeypatch.setenv(RUN_ENV, position)
    if position == "2/2":
        monkeypatch.setenv(RUNS_DIR_ENV, str(pytester.path))
    result = pytester.runpytest("--attnperf", "--attnperf-update", *FAST_OPTIONS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{RUN_ENV}={position}*is set, but this run was not started by `attnperf update`*"])
    assert sorted(path.name for path in pytester.path.glob("run-*.json")) == ["run-1.json"]
    assert not (pytester.path / "baselines" / f"{CPU.slug}.yaml").exists()


def test_stray_update_variables_steer_nothing_without_an_update(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_baseline_free_project(pytester)
    monkeypatch.setenv(RUN_ENV, "1/2")
    assert pytester.runpytest("--attnperf", *FAST_OPTIONS).ret == pytest.ExitCode.OK


@pytest.fixture
def folder() -> Iterator[tuple[Path, dict[str, str]]]:
    with runs_folder() as made:
        yield made.path, made.environment(2, 2)


def test_a_run_of_a_live_update_is_steered_and_merges_only_its_own_run_files(
    folder: tuple[Path, dict[str, str]],
) -> None:
    path, environ = folder
    run = update_run(environ, parent=os.getpid())
    assert run is not None
    assert run.last
    assert run.cancelled(os.getpid()) is None
    with pytest.raises(SteeringError, match="run 1 of 2 left no results"):
        run.earlier_runs()
    UpdateRun(1, 2, path, run.token, os.getpid(), None).keep([{"test_id": "a"}])
    assert run.earlier_runs() == [[{"test_id": "a"}]]
    (path / "run-1.json").write_text(json.dumps({"token": "0" * 32, "run": 1, "records": []}), encoding="utf-8")
    with pytest.raises(SteeringError, match="was not written by run 1 of this update"):
        run.earlier_runs()


def test_a_tampered_record_in_an_earlier_run_file_refuses_the_merge_naming_the_file(
    folder: tuple[Path, dict[str, str]],
) -> None:
    from pytest_attnperf.gate.results import flat_record
    from pytest_attnperf.session.baseline_update import _earlier_runs

    path, environ = folder
    run = update_run(environ, parent=os.getpid())
    assert run is not None
    record = json.loads(flat_record("t.py::test", "eager", "cpu", "cpu", "forward", None, 64, median_ms=1.0).to_json())
    UpdateRun(1, 2, path, run.token, os.getpid(), None).keep([record])
    assert [[item.measurement.median_ms for item in records] for records in _earlier_runs(run)] == [[1.0]]
    UpdateRun(1, 2, path, run.token, os.getpid(), None).keep([record, record])  # one run's record counted twice
    with pytest.raises(SteeringError, match=r"run-1.json holds t.py::test twice; one run measures a test once"):
        _earlier_runs(run)
    del record["measurement"]  # the run file edited between runs, its token kept
    UpdateRun(1, 2, path, run.token, os.getpid(), None).keep([record])
    with pytest.raises(
        SteeringError, match=r"run-1.json holds a record this run cannot read: .*without its measurement"
    ):
        _earlier_runs(run)


def test_a_wrong_token_or_a_dead_update_is_refused(folder: tuple[Path, dict[str, str]]) -> None:
    path, environ = folder
    with pytest.raises(SteeringError, match="do not name the private folder and token of a live update"):
        update_run({**environ, TOKEN_ENV: "f" * 32}, parent=os.getpid())
    with pytest.raises(SteeringError, match="is gone: the update was cancelled: run 2 of 2 stops before measuring"):
        update_run(environ, parent=1)
    assert not path.exists()  # the dead update's folder is removed by its run


def test_a_closed_pipe_cancels_the_run(folder: tuple[Path, dict[str, str]]) -> None:
    _, environ = folder
    read_end, write_end = os.pipe()
    try:
        run = update_run({**environ, PIPE_ENV: str(read_end)}, parent=os.getpid())
        assert run is not None
        assert run.cancelled(os.getpid()) is None
        os.close(write_end)
        assert "closed its pipe" in str(run.cancelled(os.getpid()))
    finally:
        os.close(read_end)


# ---------------------------------------------------------------- interrupted runs record nothing


def test_an_interrupted_update_writes_no_baseline(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gate=GATED.replace("def test_wait():", "def test_wait():\n    raise KeyboardInterrupt"))
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest("--attnperf", "--attnperf-update", *FAST_OPTIONS, no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*interrupted: no baseline was written*"])
    assert not (pytester.path / "baselines" / f"{CPU.slug}.yaml").exists()


# ---------------------------------------------------------------- the baseline lock


HOLD_LOCK = """
import fcntl, os, socket, sys, time
handle = open(sys.argv[1], "a+b")
fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
handle.write(f"pid {os.getpid()} on {socket.gethostname()}: hung-update\\n".encode())
handle.flush()
print("held", flush=True)
time.sleep(120)
"""


def test_a_held_lock_is_waited_for_with_a_word_then_given_up_on(tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    lock_path = tmp_path / "gpu.yaml.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        told: list[str] = []
        with pytest.raises(BaselineFileError) as refused, locked(path, wait_s=0.3, notify=told.append):
            pytest.fail("the lock was taken while another process held it")
        assert told == [
            f"attnperf: waiting for the lock {lock_path} (held by pid {holder.pid} on {os.uname().nodename}: "
            f"hung-update) to write gpu.yaml; giving up after 0.3 s"
        ]
        message = str(refused.value)
        assert f"waiting for its lock {lock_path}, held by pid {holder.pid}" in message
        assert f"the lock is stale: delete {lock_path} and run the update again" in message
    finally:
        holder.kill()
        holder.wait()
    with locked(path, wait_s=0.3):  # released by the holder's death: taken at once, and named
        assert lock_path.read_text().startswith(f"pid {os.getpid()} on ")
    assert lock_path.read_text() == ""


def test_a_lock_left_by_a_dead_process_is_called_stale(tmp_path: Path) -> None:
    lock_path = tmp_path / "gpu.yaml.lock"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_path.write_text(f"pid {finished.stdout.strip()} on {os.uname().nodename}: attnperf update\n")
    assert "that process is no longer running: a stale lock" in lock_holder(lock_path)


# ---------------------------------------------------------------- a busy CPU


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        (CpuLoad(preempted=0.02, runnable_others=0.2, host_cpus=2, load_1min=3.0), []),
        (CpuLoad(preempted=None, runnable_others=None, host_cpus=2), []),
        (CpuLoad(preempted=0.6, runnable_others=0.0, host_cpus=2), ["this thread ran only 40 % of a 20 ms busy loop"]),
        (
            CpuLoad(preempted=0.0, runnable_others=4.4, host_cpus=2, load_1min=7.2),
            ["4.4 other tasks wanted the host's 2 CPUs"],
        ),
    ],
)
def test_contention_is_judged_from_the_measured_figures(load: CpuLoad, expected: list[str]) -> None:
    problems = contention_problems(load)
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start)


QUIET = CpuLoad(preempted=0.0, runnable_others=0.0, host_cpus=2)
CONTENDED = CpuLoad(preempted=0.55, runnable_others=4.0, host_cpus=2, load_1min=6.0)


@pytest.mark.parametrize(
    ("load", "allow", "recorded"), [(QUIET, False, True), (CONTENDED, False, False), (CONTENDED, True, True)]
)
def test_a_busy_cpu_is_warned_and_not_recorded_unless_allowed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, load: CpuLoad, allow: bool, recorded: bool
) -> None:
    monkeypatch.setattr(cpu_load, "read_cpu_load", lambda *args, **kwargs: load)
    _write_baseline_free_project(pytester)
    result = pytester.runpytest("--attnperf", "--attnperf-update", *OPTIONS, *(BUSY if allow else ()))
    written = (pytester.path / "baselines" / f"{CPU.slug}.yaml").exists()
    assert written is recorded
    if load is CONTENDED:
        result.stdout.fnmatch_lines(
            ["attnperf: CPU busy: at the start: this thread ran only 45 % *", "*CPU busy: at the end:*"]
        )
    if not recorded:
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.stdout.fnmatch_lines(["*not recording baselines measured on a busy CPU*--attnperf-allow-busy-cpu*"])
    else:
        assert result.ret == pytest.ExitCode.OK


def test_the_busy_cpu_check_is_off_with_the_guard(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_load, "read_cpu_load", lambda *args, **kwargs: CONTENDED)
    _write_baseline_free_project(pytester)
    assert pytester.runpytest("--attnperf", "--attnperf-update", "--attnperf-guard=off", *OPTIONS).ret == 0
    refused = pytester.runpytest("--attnperf", "--attnperf-guard=refuse", *OPTIONS)
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*refusing to time on a busy CPU (--attnperf-guard=refuse)*"])


BUSY_LOOP = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
print("spinning", flush=True)
while True:
    pass
"""
MEASURE = """
import os, sys
os.sched_setaffinity(0, {int(sys.argv[1])})
from pytest_attnperf.measure.cpu_load import read_cpu_load
print(read_cpu_load(0.3).preempted)
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_a_busy_loop_on_the_same_cpu_is_detected() -> None:
    """Both pinned to one CPU, the busy loop takes about half of it, however busy the rest of the machine is."""
    cpu = str(min(os.sched_getaffinity(0)))
    spinner = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, cpu], stdout=subprocess.PIPE, text=True)
    try:
        assert spinner.stdout is not None
        assert spinner.stdout.readline().strip() == "spinning"
        measured = subprocess.run([sys.executable, "-c", MEASURE, cpu], capture_output=True, text=True, check=True)
        preempted = float(measured.stdout)
        assert contention_problems(CpuLoad(preempted=preempted, runnable_others=None, host_cpus=1)), preempted
    finally:
        spinner.kill()
        spinner.wait()


def test_a_cancel_during_a_run_ends_the_update_with_the_signal_and_removes_its_folder(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pytest_attnperf.session.baseline_update import run_update
    from pytest_attnperf.session.update_process import Cancelled

    folders: list[Path] = []

    def cancelled_run(command: list[str], env: dict[str, str]) -> int:
        folders.append(Path(env[RUNS_DIR_ENV]))
        raise Cancelled(signal.SIGTERM)

    assert run_update(3, [], run=cancelled_run) == 128 + signal.SIGTERM
    assert (
        "stopped by SIGTERM during run 1 of 3; its processes are ended, nothing was merged" in capsys.readouterr().err
    )
    assert not folders[0].exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the update's handlers are gone with it


def test_an_update_with_a_runs_dir_goes_on_from_the_runs_an_earlier_call_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_attnperf.session.baseline_update import run_update
    from pytest_attnperf.session.update_process import Cancelled

    started: list[int] = []

    def run(command: list[str], env: dict[str, str], *, cancel_at: int) -> int:
        index = int(env[RUN_ENV].split("/")[0])
        if index == cancel_at:
            raise Cancelled(signal.SIGTERM)  # a CI job's time limit
        started.append(index)
        if index < 3:
            UpdateRun(index, 3, Path(env[RUNS_DIR_ENV]), env[TOKEN_ENV], os.getpid(), None).keep([])
        return 0

    folder = tmp_path / "runs"
    assert run_update(3, [], run=lambda c, env: run(c, env, cancel_at=2), runs_dir=folder) == 128 + signal.SIGTERM
    assert f"The finished runs are kept in {folder}: the same command goes on from them" in capsys.readouterr().err
    assert run_update(3, [], run=lambda c, env: run(c, env, cancel_at=0), runs_dir=folder) == 0
    assert started == [1, 2, 3]  # run 1 was not measured again
    assert f"run 1 of 3: kept in {folder} by an earlier call" in capsys.readouterr().out
    assert run_update(3, [], run=lambda c, env: run(c, env, cancel_at=0), runs_dir=folder) == 0
    assert started == [1, 2, 3, 1, 2, 3]  # a finished update's runs are never merged again
