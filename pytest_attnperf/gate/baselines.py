"""Per-GPU-model YAML baselines: where they live, locked atomic writes and merges.

One file per GPU model, ``<dir>/<gpu-slug>.yaml``; what it holds is :mod:`.baseline_schema`, what
a file must be before it is parsed :mod:`.baseline_limits`, how it is read and validated
:mod:`.baseline_reader` (all re-exported here). A bad file raises
:class:`BaselineFileError` naming the file, the line and key, and what was expected; it is
never rewritten on error. Writes go to a temporary file in the same folder, are flushed to disk
and renamed over the old file, under an exclusive lock, so a killed update leaves the old file
or the new one and two concurrent updates lose no entries. An entry the reader would refuse is
refused before anything is written, with the reason.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .baseline_limits import read_baseline_text
from .baseline_reader import entry_problem, load_baseline, parse_baseline_text
from .baseline_schema import (
    HEADER,
    LATENCY_KEYS,
    SCHEMA_VERSION,
    BaselineEntry,
    BaselineFile,
    BaselineFileError,
    round_significant,
)

__all__ = [
    "HEADER",
    "LATENCY_KEYS",
    "SCHEMA_VERSION",
    "BaselineEntry",
    "BaselineFile",
    "BaselineFileError",
    "Change",
    "baseline_path",
    "load_baseline",
    "locked",
    "merge_entries",
    "now_iso",
    "parse_baseline_text",
    "read_baseline_text",
    "round_significant",
    "write_atomic",
]


def baseline_path(directory: Path, slug: str) -> Path:
    """``directory/<slug>.yaml``, refusing any slug that would leave the directory.

    The name's characters decide, not where links lead: a baseline file may be a symbolic link (one file
    shared by several folders), read and written through; a loop of links fails to read, naming the file.
    """
    if not slug or slug in (".", "..") or any(char in slug for char in "/\\\0") or slug.startswith("."):
        raise ValueError(f"refusing baseline name {slug!r}: it must be a plain file name")
    return directory / f"{slug}.yaml"


# ---------------------------------------------------------------- writing


LOCK_WAIT_S = 120.0  # a merge holds the lock for seconds; minutes mean a hung update or a stale lock


@contextlib.contextmanager
def locked(path: Path, *, wait_s: float | None = None, notify: Callable[[str], None] | None = None) -> Iterator[None]:
    """Exclusive lock on ``path``'s sidecar lock file, across processes (xdist workers, CI jobs).

    A lock held by another process is waited for at most ``wait_s`` (default :data:`LOCK_WAIT_S`),
    saying what it waits for and who holds it; then :class:`BaselineFileError` names the lock file
    and how to clear it. The holder writes its process id, host and command into the lock file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; atomic rename still protects the file
            yield
            return
        _acquire(handle, lock_path, path, LOCK_WAIT_S if wait_s is None else wait_s, notify or _tell)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(_holder_line().encode("utf-8", "replace"))
            handle.flush()
            yield
        finally:
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()  # a lock left by a crash keeps its holder's line; a released one is empty
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _acquire(handle: Any, lock_path: Path, path: Path, wait_s: float, notify: Callable[[str], None]) -> None:
    import fcntl

    started = time.monotonic()
    pause = 0.05
    told = False
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = time.monotonic() - started
            if waited >= wait_s:
                raise BaselineFileError(
                    path,
                    f"gave up after {waited:.0f} s waiting for its lock {lock_path}, held by {lock_holder(lock_path)}. "
                    "If no `attnperf update` or `pytest --attnperf-update` is still writing this folder (on any "
                    f"machine that shares it), the lock is stale: delete {lock_path} and run the update again",
                ) from None
            if not told:
                notify(
                    f"attnperf: waiting for the lock {lock_path} (held by {lock_holder(lock_path)}) to write "
                    f"{path.name}; giving up after {wait_s:g} s"
                )
                told = True
            time.sleep(min(pause, max(0.0, wait_s - waited)))
            pause = min(pause * 2, 1.0)
            continue
        if told:
            notify(f"attnperf: got the lock {lock_path} after {time.monotonic() - started:.1f} s")
        return


def _tell(message: str) -> None:
    with contextlib.suppress(OSError):
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _holder_line() -> str:
    command = " ".join(os.path.basename(part) if index == 0 else part for index, part in enumerate(sys.argv))
    return f"pid {os.getpid()} on {socket.gethostname()}: {command[:200]}\n"


def lock_holder(lock_path: Path) -> str:
    """Who holds ``lock_path``, as far as can be told: the holder's own line, the kernel's lock table."""
    try:
        line = lock_path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        line = ""
    kernel = _flock_holders(lock_path)
    words = line.split()
    if len(words) >= 4 and words[0] == "pid" and words[1].isdigit():
        if words[3].rstrip(":") == socket.gethostname() and not _alive(int(words[1])):
            line += " (that process is no longer running: a stale lock, as a network filesystem can leave)"
        return line
    if kernel:
        return "process " + ", ".join(str(pid) for pid in kernel) + " (from /proc/locks)"
    return "another process (not named in the lock file)"


def _flock_holders(lock_path: Path) -> list[int]:
    """The processes holding a flock on ``lock_path`` on this host (Linux /proc/locks), or []."""
    try:
        status = lock_path.stat()
        text = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    device = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    holders = []
    for row in text.splitlines():
        fields = row.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device and fields[4].isdigit():
            holders.append(int(fields[4]))
    return holders


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write a temp file next to ``path``, fsync it, rename it over ``path``, fsync the folder: a reader (or a run
    killed mid-write) never sees half a file. Every file the plugin rewrites goes through here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(text.encode("utf-8") if isinstance(text, str) else text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(temp_name, path.stat().st_mode & 0o777)
        else:
            os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@dataclass(frozen=True)
class Change:
    """One entry's old and new value, for the 'old -> new' report; ``refused`` says why it was not written."""

    test_id: str
    old: BaselineEntry | None
    new: BaselineEntry
    refused: str | None = None


def merge_entries(
    path: Path,
    device: Mapping[str, Any],
    environment: Mapping[str, Any],
    new_entries: Mapping[str, BaselineEntry],
) -> list[Change]:
    """Merge ``new_entries`` into the file at ``path`` (keeping all others), atomically, under a lock.

    An entry the reader would refuse (a median of 0, a NaN) is not written: its Change carries the
    reason and the old entry stays. The whole new text is read back before it replaces the file.
    """
    # A baseline file that is a symbolic link (one file shared by several folders) is updated where it
    # points: the atomic rename would otherwise replace the link and leave the shared file as it was.
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    refused = {test_id: entry_problem(test_id, entry, path) for test_id, entry in new_entries.items()}
    with locked(path):
        current = load_baseline(path)  # a bad file raises here, before anything is written
        if current is None:
            current = BaselineFile(path=path, device=dict(device), environment={})
        changes = [
            Change(test_id, current.entries.get(test_id), entry, refused[test_id])
            for test_id, entry in sorted(new_entries.items())
        ]
        accepted = {change.test_id: change.new for change in changes if change.refused is None}
        if not accepted:
            return changes  # nothing to write: the file stays as it was
        current.entries.update(accepted)
        current.device = dict(device)
        current.environment = dict(environment)
        text = current.to_text()
        parse_baseline_text(text, path)  # what the writer writes, the reader reads: never a file it refuses
        write_atomic(path, text)
    return changes


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
