"""What the `attnperf` commands share: the one-line error, the --attnperf-* flags given, the device asked for,
stored reports and output paths checked first."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


class CommandError(Exception):
    """A bad argument found after parsing (a device that is not there, an unknown backend): exit 2, one line."""


def stored_report(path: str) -> Any:
    from ..runs.stored import ReportError, load_report

    try:
        return load_report(Path(path))
    except ReportError as error:
        raise CommandError(str(error)) from None


def output_file(path: str | None, source: str) -> Path | None:
    """An output path checked before anything is read or written (as a run checks its report paths)."""
    from ..session.output_paths import OutputPathError, check_file_target

    if path is None:
        return None
    target = Path(os.path.abspath(path))
    try:
        check_file_target(target, source)
    except OutputPathError as error:
        raise CommandError(str(error)) from None
    return target


def attnperf_flags(arguments: argparse.Namespace) -> dict[str, Any]:
    """The --attnperf-* options of a command, by dest, as settings_here and to_command_line take them."""
    return {dest: value for dest, value in vars(arguments).items() if dest.startswith("attnperf_")}


def command_device(spec: str | None) -> Any:
    """The torch device --attnperf-device names; one that is not there is an argument error, not a traceback."""
    from ..measure.device import resolve_device
    from ..measure.known_noise import import_quietly

    try:
        device = resolve_device("auto" if spec is None else spec)  # an empty --attnperf-device= is refused, not auto
    except ValueError as error:
        raise CommandError(f"--attnperf-device: {error}") from None
    import_quietly()  # env and report compile backends too: torch's import-time deprecations, filtered there
    return device
