"""The processes of `attnperf update --runs N`: who may steer a pytest run, and how a cancelled update ends.

The parent makes a private runs folder holding a one-time token, and starts each run in its own
process group with the token, the folder and the read end of a pipe in its environment. A run is
steered (keeps its results for the last run, or merges the earlier runs' results) only when all of
these agree; a stray ``ATTNPERF_RUN`` in a user's shell is refused instead of writing files into the
current folder. A signal to the parent (SIGINT, SIGTERM, SIGHUP) is passed to the run's whole process
group as Ctrl-C, then the group is killed; when the parent dies without a word (SIGKILL), the pipe
reaches end-of-file and the run's watchdog removes the runs folder and kills its group. Either way no
process lives on and nothing is merged after the update was cancelled.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

RUNS_DIR_ENV = "ATTNPERF_RUNS_DIR"
RUN_ENV = "ATTNPERF_RUN"  # "k/N": this process is run k of N of `attnperf update --runs N`
TOKEN_ENV = "ATTNPERF_UPDATE_TOKEN"
PIPE_ENV = "ATTNPERF_UPDATE_PIPE"  # a file descriptor: end-of-file when `attnperf update` is gone
STEERING = (RUN_ENV, RUNS_DIR_ENV, TOKEN_ENV, PIPE_ENV)
TOKEN_FILE = "update.json"
CANCEL_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
GRACE_S = 10.0  # how long a run may take to stop after Ctrl-C is passed on, before its group is killed


class SteeringError(ValueError):
    """The ATTNPERF_RUN* variables are set, but not by a live `attnperf update` of this run."""


class Cancelled(BaseException):
    """`attnperf update` received ``signum``: its run is stopped and nothing more is merged."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# ---------------------------------------------------------------- the parent: `attnperf update`


@dataclass(frozen=True)
class RunsFolder:
    """The folder an update's runs leave their results in, and the token that proves them its own.

    ``given``: a folder the user named (``attnperf update --runs-dir``), kept when the update is cancelled
    so that the same command goes on from the runs it finished; otherwise a private temporary one.
    """

    path: Path
    token: str
    total: int = 0
    given: bool = False

    def environment(self, index: int, total: int) -> dict[str, str]:
        return {RUNS_DIR_ENV: str(self.path), RUN_ENV: f"{index}/{total}", TOKEN_ENV: self.token}

    def kept(self, index: int) -> bool:
        """Whether run ``index`` of this update left its results (see :meth:`UpdateRun.keep`)."""
        try:
            kept = json.loads((self.path / run_file_name(index)).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(kept, dict) and kept.get("token") == self.token and kept.get("run") == index

    def finished(self) -> None:
        """The update merged: a given folder's token is dropped, so its run files are never merged again."""
        with contextlib.suppress(OSError):
            (self.path / TOKEN_FILE).unlink()


def run_file_name(index: int) -> str:
    return f"run-{index}.json"


@contextlib.contextmanager
def runs_folder(total: int = 0, given: Path | None = None) -> Iterator[RunsFolder]:
    """The update's runs folder with its token and this process's id in ``update.json``.

    Without ``given``: a fresh private folder (mode 0700), removed however the update ends. With it: that
    folder, whose token an earlier, unfinished update of as many runs left is taken over (its finished runs
    count); it is kept.
    """
    path = given if given is not None else Path(tempfile.mkdtemp(prefix="attnperf-runs-"))
    try:
        token = secrets.token_hex(16)
        if given is not None:
            path.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError, ValueError, AttributeError):
                earlier = json.loads((path / TOKEN_FILE).read_text(encoding="utf-8"))
                if earlier.get("runs") == total and isinstance(earlier.get("token"), str):
                    token = earlier["token"]
        stamp = {"token": token, "parent": os.getpid(), "runs": total, "keep": given is not None}
        temp = path / (TOKEN_FILE + ".tmp")
        temp.write_text(json.dumps(stamp), encoding="utf-8")
        os.replace(temp, path / TOKEN_FILE)
        yield RunsFolder(path, token, total, given is not None)
    finally:
        if given is None:
            shutil.rmtree(path, ignore_errors=True)


def _raise_cancelled(signum: int, frame: FrameType | None) -> None:
    raise Cancelled(signum)


@contextlib.contextmanager
def cancellable() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise :class:`Cancelled` (so ``finally`` blocks run); restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_cancelled) for signum in CANCEL_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ignore_cancels() -> None:
    """After a cancel: further signals are ignored while the update cleans up (:func:`cancellable` restores them)."""
    if threading.current_thread() is threading.main_thread():
        for signum in CANCEL_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def stop_group(process: subprocess.Popen[bytes], grace_s: float = GRACE_S) -> None:
    """Ctrl-C to the run's process group (pytest ends cleanly), then SIGKILL to whatever is left of it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired, Cancelled, KeyboardInterrupt):  # a second signal: kill now
        process.wait(grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # also pytest-xdist workers the run left behind
    process.wait()


def run_child(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Run one pytest process of the update in its own process group; a cancel stops the whole group.

    The child holds the read end of a pipe whose write end only this process has: when this process
    dies, however it dies, the child's watchdog sees end-of-file.
    """
    if os.name != "posix":  # no process groups or inherited pipes: the console stops the child on Ctrl-C
        return subprocess.call(list(command), env=dict(env))
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            list(command), env={**env, PIPE_ENV: str(read_end)}, pass_fds=(read_end,), start_new_session=True
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    try:
        return process.wait()
    except BaseException:
        stop_group(process)
        raise
    finally:
        os.close(write_end)


# ---------------------------------------------------------------- the child: one run of the update


@dataclass(frozen=True)
class UpdateRun:
    """This process is run ``index`` of ``total`` of a live `attnperf update` whose runs folder is ``folder``."""

    index: int
    total: int
    folder: Path
    token: str
    parent: int
    pipe: int | None
    keep_folder: bool = False  # a folder the user named (--runs-dir): never removed by a run

    @property
    def last(self) -> bool:
        return self.index == self.total

    def keep(self, records: list[dict[str, Any]]) -> Path:
        """Leave this run's results for the last run: written whole (temp file, rename), with the token."""
        path = self.folder / run_file_name(self.index)
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(json.dumps({"token": self.token, "run": self.index, "records": records}), encoding="utf-8")
        os.replace(temp, path)
        return path

    def earlier_runs(self) -> list[list[dict[str, Any]]]:
        """The records of runs 1..k-1 of this update; a missing run or a file of another update raises."""
        runs = []
        for index in range(1, self.index):
            path = self.folder / run_file_name(index)
            try:
                kept = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise SteeringError(
                    f"run {index} of {self.total} left no results in {path} (see its output above): nothing merged"
                ) from None
            except (OSError, ValueError) as error:
                raise SteeringError(f"cannot read run {index}'s results {path}: {error}") from None
            if not (
                isinstance(kept, dict)
                and hmac.compare_digest(str(kept.get("token")), self.token)
                and kept.get("run") == index
                and isinstance(kept.get("records"), list)
            ):
                raise SteeringError(f"{path} was not written by run {index} of this update: refused, nothing merged")
            runs.append(kept["records"])
        return runs

    def cancelled(self, parent: int | None = None) -> str | None:
        """Why this run must not write any more (its `attnperf update` is gone), or None.

        ``parent`` stands for this process's parent id (tests).
        """
        if (os.getppid() if parent is None else parent) != self.parent or not (self.folder / TOKEN_FILE).is_file():
            return f"`attnperf update` (process {self.parent}) is gone: the update was cancelled"
        if self.pipe is not None and _at_end_of_file(self.pipe):
            return f"`attnperf update` (process {self.parent}) closed its pipe: the update was cancelled"
        return None


def _at_end_of_file(descriptor: int) -> bool:
    import select

    try:
        readable, _, _ = select.select([descriptor], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # the parent never writes: readable means end-of-file


def update_run(environ: Mapping[str, str] | None = None, *, parent: int | None = None) -> UpdateRun | None:
    """This process's place in an `attnperf update`, or None when no ATTNPERF_RUN* variable is set.

    Set variables that do not lead to a live update's private folder and token raise
    :class:`SteeringError`, which names them: only a run started by `attnperf update` is steered.
    """
    environ = os.environ if environ is None else environ
    present = [name for name in STEERING if environ.get(name)]
    if not present:
        return None
    shown = ", ".join(f"{name}={environ[name]}" if name in (RUN_ENV, RUNS_DIR_ENV) else name for name in present)
    fix = (
        f"{shown} is set, but this run was not started by `attnperf update`: {{}}. These variables are "
        f"`attnperf update`'s own; unset them ({', '.join(present)}) to update the baselines from this run alone, "
        "or run `attnperf update --runs N`"
    )
    text = environ.get(RUN_ENV, "")
    index, _, total = text.partition("/")
    if not (index.isdigit() and total.isdigit() and 1 <= int(index) <= int(total)):
        raise SteeringError(fix.format(f"{RUN_ENV} must be 'k/N' with 1 <= k <= N"))
    folder = Path(environ.get(RUNS_DIR_ENV, ""))
    try:
        stamp = json.loads((folder / TOKEN_FILE).read_text(encoding="utf-8")) if environ.get(RUNS_DIR_ENV) else None
    except (OSError, ValueError):
        stamp = None
    token = environ.get(TOKEN_ENV, "")
    if not isinstance(stamp, dict) or not token or not hmac.compare_digest(str(stamp.get("token")), token):
        raise SteeringError(
            fix.format(f"{RUNS_DIR_ENV} and {TOKEN_ENV} do not name the private folder and token of a live update")
        )
    pipe = environ.get(PIPE_ENV, "")
    run = UpdateRun(
        int(index),
        int(total),
        folder,
        token,
        int(stamp.get("parent", -1)),
        int(pipe) if pipe.isdigit() else None,
        keep_folder=bool(stamp.get("keep")),
    )
    gone = run.cancelled(parent)
    if gone:
        if not run.keep_folder:
            shutil.rmtree(folder, ignore_errors=True)  # the token proves the folder is this (dead) update's
        raise SteeringError(f"{gone}: run {run.index} of {run.total} stops before measuring, and writes nothing")
    return run


def watch_parent(run: UpdateRun, *, on_gone: Callable[[UpdateRun], None] | None = None) -> threading.Thread | None:
    """A daemon thread that waits for the parent's pipe to close; then the runs folder goes and the group dies.

    A parent killed with SIGKILL cannot stop its run; this is how the run learns of it, mid-measurement
    as well as before a merge.
    """
    pipe = run.pipe
    if pipe is None:
        return None

    def wait() -> None:
        with contextlib.suppress(OSError):
            while os.read(pipe, 1):
                pass
        (on_gone or _stop_after_parent)(run)

    thread = threading.Thread(target=wait, name="attnperf-update-watchdog", daemon=True)
    thread.start()
    return thread


def _stop_after_parent(run: UpdateRun) -> None:
    if not run.keep_folder:
        shutil.rmtree(run.folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        sys.stderr.write(
            f"\nattnperf: `attnperf update` (process {run.parent}) is gone: run {run.index} of {run.total} "
            "stops here without writing any baseline\n"
        )
        sys.stderr.flush()
    # The run is its process group's leader (started in a session of its own): its xdist workers go with it.
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def join_update() -> UpdateRun | None:
    """At the start of a `--attnperf-update` run: its place in an `attnperf update` (watched), or None.

    Raises :class:`SteeringError` for stray ATTNPERF_RUN* variables, before anything is measured.
    """
    run = update_run()
    if run is not None:
        watch_parent(run)
    return run
