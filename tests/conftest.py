"""With --attnperf this repo runs its attention suite; the plugin's own unit tests run without it."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    unit_dir = Path(__file__).parent / "unit"
    asked_for_unit = any(Path(arg.split("::")[0]).resolve().is_relative_to(unit_dir) for arg in config.args)
    if config.getoption("attnperf") and collection_path == unit_dir and not asked_for_unit:
        return True
    return None
