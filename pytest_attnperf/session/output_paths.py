"""Where a run will write, checked before it measures (no torch import).

A report path that cannot be written must stop the run at its start with a message naming the path,
not end a long run with a traceback. Each check does what the write will do, as far as it can without
leaving anything behind: the folders are made, and a file of the very name is created and removed.
What can only fail at the write itself (a full disk) is reported then, by the writers.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..spec.settings import Settings


class OutputPathError(ValueError):
    """A path the run would write to cannot be written; the message names it and why."""


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def shown(path: Path) -> str:
    """A path as the user would write it from here: relative inside the current folder, else absolute."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)
    return str(path) if relative.startswith("..") else relative


def _make_folder(folder: Path, source: str) -> None:
    """Make ``folder`` (and its parents), or say clearly why it cannot be."""
    if folder.is_symlink() and not folder.exists():
        raise OutputPathError(f"{source}: cannot use {shown(folder)}: it is a symbolic link to a missing folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputPathError(f"{source}: cannot use {shown(folder)} as a folder: it is a file") from None
    except OSError as error:
        raise OutputPathError(f"{source}: cannot create the folder {shown(folder)}: {_reason(error)}") from None


def _probe_folder(folder: Path, source: str) -> None:
    """Create and remove a file in ``folder``: as root, permission bits say nothing, so try it."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".attnperf-write-check-"):
            pass
    except OSError as error:
        raise OutputPathError(f"{source}: cannot write in the folder {shown(folder)}: {_reason(error)}") from None


def check_file_target(path: Path, source: str) -> None:
    """``path`` can be written (created, or replaced/appended to) by this run."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        status = None
    except OSError as error:  # under a file, a loop of links, a name too long
        raise OutputPathError(f"{source}: cannot write {shown(path)}: {_reason(error)}") from None
    if status is not None:
        if path.is_dir():
            raise OutputPathError(f"{source}: cannot write {shown(path)}: it is a folder; give a file name")
        try:
            with open(path, "ab"):  # opened for appending, not written: the file stays as it is
                pass
        except OSError as error:
            raise OutputPathError(f"{source}: cannot write {shown(path)}: {_reason(error)}") from None
        return
    _make_folder(path.parent, source)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError as error:
        raise OutputPathError(f"{source}: cannot write {shown(path)}: {_reason(error)}") from None
    os.close(descriptor)
    with contextlib.suppress(OSError):
        os.unlink(path)


def check_folder_target(folder: Path, source: str) -> None:
    """``folder`` exists as a folder (made here if missing) and files can be written in it."""
    try:
        status = os.stat(folder)
    except FileNotFoundError:
        status = None
    except OSError as error:
        raise OutputPathError(f"{source}: cannot use the folder {shown(folder)}: {_reason(error)}") from None
    if status is not None and not folder.is_dir():
        raise OutputPathError(f"{source}: cannot use {shown(folder)} as a folder: it is a file")
    _make_folder(folder, source)
    _probe_folder(folder, source)


def check_baselines_folder(folder: Path, source: str, *, updating: bool) -> None:
    """The baselines folder can be read (and, when updating, written); a missing one only means no baselines yet."""
    try:
        status = os.stat(folder)
    except FileNotFoundError:
        status = None
    except OSError as error:
        raise OutputPathError(f"{source}: cannot use the baselines folder {shown(folder)}: {_reason(error)}") from None
    if status is not None and not folder.is_dir():
        raise OutputPathError(
            f"{source}: cannot use {shown(folder)} as the baselines folder: it is a file, not a folder"
        )
    if updating:
        check_folder_target(folder, source)
    elif status is None and folder.is_symlink():
        raise OutputPathError(f"{source}: cannot use {shown(folder)}: it is a symbolic link to a missing folder")


def markdown_target(settings: Settings, environ: Mapping[str, str] = os.environ) -> tuple[Path, str] | None:
    """Where the Markdown summary goes, and who said so: --attnperf-markdown, else $GITHUB_STEP_SUMMARY."""
    if settings.markdown_path is not None:
        return settings.markdown_path, "--attnperf-markdown"
    summary = environ.get("GITHUB_STEP_SUMMARY", "")
    if summary.strip():
        return Path(os.path.abspath(summary)), "$GITHUB_STEP_SUMMARY"
    return None


def check_output_paths(settings: Settings, environ: Mapping[str, str] = os.environ) -> None:
    """Every path this run will write to, checked before anything is measured."""
    if settings.json_path is not None:
        check_file_target(settings.json_path, "--attnperf-json")
    markdown = markdown_target(settings, environ)
    if markdown is not None:
        check_file_target(*markdown)
    if settings.report_dir is not None:
        check_folder_target(settings.report_dir, "--attnperf-report")
    exports = (settings.bmf_path, "--attnperf-bmf"), (settings.github_benchmark_path, "--attnperf-github-benchmark")
    for path, source in exports:
        if path is not None:
            check_file_target(path, source)
    check_baselines_folder(
        settings.baselines_dir, "the baselines folder (--attnperf-baselines)", updating=settings.update
    )
