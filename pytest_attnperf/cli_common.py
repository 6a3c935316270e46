"""What the `attnperf` commands share: the one-line error, stored reports and output paths checked first."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class CommandError(Exception):
    """A bad argument found after parsing (a device that is not there, an unknown backend): exit 2, one line."""


def stored_report(path: str) -> Any:
    from .runs.stored import ReportError, load_report

    try:
        return load_report(Path(path))
    except ReportError as error:
        raise CommandError(str(error)) from None


def output_file(path: str | None, source: str) -> Path | None:
    """An output path checked before anything is read or written (as a run checks its report paths)."""
    from .output_paths import OutputPathError, check_file_target

    if path is None:
        return None
    target = Path(os.path.abspath(path))
    try:
        check_file_target(target, source)
    except OutputPathError as error:
        raise CommandError(str(error)) from None
    return target
