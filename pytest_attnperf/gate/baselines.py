"""Per-GPU-model YAML baselines: where they live, locked atomic writes and merges.

One file per GPU model, ``<dir>/<gpu-slug>.yaml``; what it holds is :mod:`.baseline_schema`, how
it is read and validated :mod:`.baseline_reader` (both re-exported here). A bad file raises
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
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .baseline_reader import (
    BaselineFileError,
    entry_problem,
    load_baseline,
    parse_baseline_text,
    read_baseline_text,
)
from .baseline_schema import HEADER, LATENCY_KEYS, SCHEMA_VERSION, BaselineEntry, BaselineFile, round_significant

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


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path``'s sidecar lock file, across processes (xdist workers, CI jobs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; atomic rename still protects the file
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Write a temp file next to ``path``, fsync it, rename it over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
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
