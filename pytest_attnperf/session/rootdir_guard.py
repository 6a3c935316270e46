"""Test ids must not depend on how an option was spelled: ``--attnperf-baselines DIR`` versus ``=DIR``.

pytest chooses the rootdir (which every test id is relative to) and the ini file before it loads
plugins, so it does not know yet that ``--attnperf-baselines`` takes a value: ``DIR`` written after
a space counts as a test path, and an existing one can move the rootdir - the gate then finds no
baseline, and an update records entries under other ids. pytest cannot be told afterwards (its
issue #8846), so such a run is refused, naming the ``=`` spelling that is safe. The rootdir is
computed again with pytest's own function without those values; only a value that changed the
rootdir or the ini file is refused.
"""

from __future__ import annotations

import inspect
import os
import shlex
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pytest


def values_given_apart(args: Sequence[str], flags: Collection[str]) -> list[tuple[str, str]]:
    """(flag, value) for each of ``flags`` followed by its value as the next argument."""
    pairs = []
    for index, argument in enumerate(args[:-1]):
        if argument == "--":
            break
        if argument in flags and not args[index + 1].startswith("-"):
            pairs.append((argument, args[index + 1]))
    return pairs


def _exists(invocation_dir: Path, value: str) -> bool:
    # What pytest's rootdir search counts: an existing path, the part before any '::'.
    try:
        return (invocation_dir / value.split("::")[0]).exists()
    except (OSError, ValueError):
        return False


def _rootdir_and_inifile(config: pytest.Config, extra: Sequence[str]) -> tuple[Path, Path | None]:
    """What pytest chooses from this run's test paths plus ``extra`` (its determine_setup, as it calls it)."""
    from _pytest.config.findpaths import determine_setup

    option = config.option
    keywords: dict[str, Any] = {
        "inifile": option.inifilename,
        "args": [*option.file_or_dir, *extra],
        "rootdir_cmd_arg": option.rootdir or None,
        "invocation_dir": config.invocation_params.dir,
    }
    if "override_ini" in inspect.signature(determine_setup).parameters:
        keywords["override_ini"] = option.override_ini
    chosen = determine_setup(**keywords)
    return Path(chosen[0]), (Path(chosen[1]) if chosen[1] is not None else None)


def check_option_spelling(config: pytest.Config, flags: Collection[str]) -> None:
    """Raise UsageError when a value of ``flags`` written after a space moved the rootdir or ini file."""
    arguments = [*shlex.split(os.environ.get("PYTEST_ADDOPTS", "")), *map(str, config.invocation_params.args)]
    invocation_dir = config.invocation_params.dir
    apart = [(flag, value) for flag, value in values_given_apart(arguments, flags) if _exists(invocation_dir, value)]
    if not apart:
        return
    try:
        chosen = _rootdir_and_inifile(config, [value for _, value in apart])
        intended = _rootdir_and_inifile(config, [])
    except Exception:  # pytest's internals moved: refuse what may have moved the rootdir
        effect = "it may have moved the rootdir"
    else:
        if chosen == intended:
            return
        effect = (
            f"it moved the rootdir to {chosen[0]} (from {intended[0]})"
            if chosen[0] != intended[0]
            else f"it changed the ini file to {chosen[1]} (from {intended[1]})"
        )
    spelled = ", ".join(f"{flag} {value}" for flag, value in apart)
    fixed = " ".join(f"{flag}={value}" for flag, value in apart)
    raise pytest.UsageError(
        f"{spelled}: written with a space, pytest took the value for a test path when it chose the rootdir "
        f"(it does so before plugins load); {effect}, which changes every test id. Write {fixed}"
    )
