"""The settings ``pytest --attnperf`` would run with in the current folder, for the ``attnperf`` command.

pytest's own machinery finds the rootdir and the ini file (pytest.ini, pyproject.toml, tox.ini, setup.cfg),
and reads its addopts, exactly as a pytest run started here would; so the command honours the same ini
keys as the plugin and re-derives no default: :func:`resolve_settings` takes each from its option.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..spec.options import ini_values
from ..spec.settings import Settings, SettingsError, resolve_settings


def settings_here(flags: Mapping[str, Any]) -> Settings:
    """``flags`` ({dest: value} of the command's own --attnperf-* options, None when not given) beat the ini
    file's addopts, which beat its attnperf_* keys, which beat each option's default.

    Raises SettingsError for a bad value or a configuration pytest itself refuses.
    """
    import pytest  # here, not at import: `attnperf show` and `diff` need no pytest
    from _pytest.config import _prepareconfig  # what pytest.main() configures with; there is no public form

    try:
        # No conftest (a project's may import anything) and no capturing: only the configuration is read.
        config = _prepareconfig(["--noconftest", "--capture=no", "-p", "no:cacheprovider"])
    except pytest.UsageError as error:
        raise SettingsError(f"pytest's configuration: {error}") from None
    try:
        given = {dest: value for dest, value in vars(config.option).items() if dest.startswith("attnperf_")}
        given.update({dest: value for dest, value in flags.items() if value is not None})  # unset: addopts' stays
        return resolve_settings(
            {**{dest: value for dest, value in given.items() if value is not None}, "attnperf": True},
            ini_values(config.getini),
            rootdir=config.rootpath,
            inifile=config.inipath,
            invocation_dir=Path.cwd(),
        )
    finally:
        config._ensure_unconfigure()
