"""Writing a study: study.json, README.md and, when matplotlib is installed, the PNG plots."""

from __future__ import annotations

import importlib.util
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ..gate.baselines import write_atomic
from .document import render_json
from .markdown import render_markdown

PLOTS_NEED = "plots need matplotlib: pip install 'pytest-attnperf[report]'"


def plots_available() -> bool:
    """Whether matplotlib can be imported (checked before measuring, so a missing one costs nothing)."""
    return importlib.util.find_spec("matplotlib") is not None


def plots_in(folder: Path) -> set[Path]:
    """The plot files a study drew into ``folder`` (render_plots' names: latency-, memory- and decode-<config>.png)."""
    return {path for kind in ("latency", "memory", "decode") for path in folder.glob(f"{kind}-*.png")}


def write_study(
    study: Mapping[str, Any], out_dir: Path | str, *, plots: bool = True, parts: Collection[str] | None = None
) -> list[Path]:
    """Write study.json, README.md and (with ``plots`` and matplotlib) the plots into ``out_dir``; return the paths.
    ``parts``: draw only these parts' plots (the others are already in ``out_dir``); None draws every one."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # Through a temporary file and a rename: a run killed mid-write (a time limit) leaves the last whole study.
    write_atomic(folder / "study.json", render_json(study))
    write_atomic(folder / "README.md", render_markdown(study))
    written = [folder / "study.json", folder / "README.md"]
    if plots and plots_available():
        from .plots import render_plots

        written += render_plots(study, folder, parts)
    return written
