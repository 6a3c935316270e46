"""PNG trend plots, one per GPU model and case family (test function); needs matplotlib (the [report] extra)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

from .drift import DriftRule
from .history import Series
from .stored import short_id

PLOTS_NEED = "plots need matplotlib: pip install 'pytest-attnperf[report]'"


def plots_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _file_name(gpu: str, family: str) -> str:
    return re.sub(r"[^\w.-]+", "-", f"{gpu}--{family}") + ".png"


def plot_families(series: Sequence[Series], out_dir: Path, rule: DriftRule) -> list[Path]:
    """Each case's median relative to its first run, one line per case; drifting cases drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[Series]] = {}
    for entry in series:
        groups.setdefault((entry.gpu, entry.family), []).append(entry)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (gpu, family), entries in sorted(groups.items()):
        figure, axes = plt.subplots(figsize=(8, 4.5))
        # Runs are evenly spaced, as the drift rule counts them, and labelled with their time.
        moments = sorted({point.at for entry in entries for point in entry.points})
        position = {moment: index for index, moment in enumerate(moments)}
        for entry in entries:
            first = entry.medians[0]
            found = entry.trend(rule)
            bold = found is not None and found.drifting
            axes.plot(
                [position[point.at] for point in entry.points],
                [100 * (value / first - 1) for value in entry.medians],
                marker="o",
                markersize=3,
                linewidth=2.5 if bold else 1,
                label=short_id(entry.test_id).split("[", 1)[-1].rstrip("]") + (" (drift)" if bold else ""),
            )
        axes.axhline(0, color="grey", linewidth=0.5)
        axes.set_title(f"{family} on {entries[0].device}")
        axes.set_ylabel("median vs first run (%)")
        axes.set_xlabel("run (when its report was written, UTC)")
        if len(entries) <= 16:
            axes.legend(fontsize=7, loc="best")
        step = max(1, len(moments) // 12)
        axes.set_xticks(range(0, len(moments), step))
        axes.set_xticklabels([moment.strftime("%m-%d %H:%M") for moment in moments[::step]], rotation=30, ha="right")
        figure.tight_layout()
        path = out_dir / _file_name(gpu, family)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
