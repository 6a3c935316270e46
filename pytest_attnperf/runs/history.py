"""``attnperf history DIR...``: each case's medians across the CI runs whose JSON reports are kept (no torch).

Reports are found in the folders given (recursively; a CI artifact also holds other JSON, which is
skipped) or named one by one, and ordered by the time each report was written (``created_at``), not
by file name or modification time, which downloads reset. Each report is one run; several runners'
reports of one run count once each per GPU model, since a case is followed per GPU model. The medians
are the raw ones, as measured: a GPU whose clocks sag run after run is a slowdown users see too.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec.units import format_ms
from .drift import DriftRule, Trend, trend
from .stored import NotAReportError, ReportError, StoredReport, gpu_of, load_report, short_id

SPARK = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Point:
    at: datetime.datetime
    median_ms: float
    verdict: str
    commit: str | None
    report: Path


@dataclass
class Series:
    """One case on one GPU model, run after run."""

    gpu: str
    device: str
    test_id: str
    points: list[Point] = field(default_factory=list)

    @property
    def family(self) -> str:
        """The test function: the plots draw each family's cases together."""
        return short_id(self.test_id).split("[", 1)[0]

    @property
    def medians(self) -> list[float]:
        return [point.median_ms for point in self.points]

    def trend(self, rule: DriftRule) -> Trend | None:
        return trend(self.medians, rule)


def find_reports(paths: Sequence[Path]) -> tuple[list[StoredReport], list[Path]]:
    """The reports under the paths, and the JSON files found in folders that are not attnperf reports.

    A file named on the command line must be a report; a folder may hold other JSON (a study, a junit
    conversion), which is skipped and counted.
    """
    reports: list[StoredReport] = []
    skipped: list[Path] = []
    for path in paths:
        if not path.exists():
            raise ReportError(f"{path}: no such file or folder")
        if not path.is_dir():
            reports.append(load_report(path))
            continue
        for candidate in sorted([*path.rglob("*.json"), *path.rglob("*.json.gz")]):
            try:
                report = load_report(candidate)
            except NotAReportError:  # other JSON; a damaged report is an error, never quietly left out
                skipped.append(candidate)
                continue
            reports.append(report)
    # A file named twice, or the same report downloaded into two folders, is one run.
    unique = {json.dumps(report.document, sort_keys=True): report for report in reports}
    reports = list(unique.values())
    undated = [report.path for report in reports if report.created_at is None]
    if undated:
        raise ReportError(
            f"{undated[0]}: has no created_at time (ISO 8601, as --attnperf-json writes it since this version), so "
            f"its place among the runs is unknown; {len(undated)} such report(s). Re-run, or leave it out"
        )
    return reports, skipped


def build_series(reports: Iterable[StoredReport]) -> list[Series]:
    """Every measured case per GPU model, its points in time order."""
    series: dict[tuple[str, str], Series] = {}
    for report in reports:
        at = report.created_at
        assert at is not None  # find_reports refuses undated reports
        for case in report.cases:
            median = case.get("median_ms")
            if not isinstance(median, (int, float)) or median <= 0:
                continue
            key = (gpu_of(case), case["test_id"])
            entry = series.setdefault(key, Series(key[0], str(case.get("device") or key[0]), case["test_id"]))
            entry.points.append(Point(at, float(median), str(case.get("verdict") or "-"), report.commit, report.path))
    for entry in series.values():
        entry.points.sort(key=lambda point: point.at)
    return sorted(series.values(), key=lambda entry: (entry.gpu, entry.test_id))


def sparkline(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    if high == low:
        return SPARK[3] * len(values)
    return "".join(SPARK[round((value - low) / (high - low) * (len(SPARK) - 1))] for value in values)


def _gate(points: Sequence[Point]) -> str:
    failed = sum(point.verdict in ("REGRESSION", "MISMATCH") for point in points)
    return "all passed" if not failed else f"{failed} failed"


def trend_rows(series: Sequence[Series], rule: DriftRule) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for entry in series:
        medians = entry.medians
        found = entry.trend(rule)
        if found is None:
            slope, flag = "-", f"(under {rule.min_runs} runs)"
        else:
            slope = found.describe()
            flag = f"DRIFT {found.direction}" if found.drifting else "steady"
        rows.append(
            (
                short_id(entry.test_id),
                str(len(medians)),
                format_ms(medians[0]),
                format_ms(medians[-1]),
                f"x{medians[-1] / medians[0]:.3f}",
                sparkline(medians),
                slope,
                _gate(entry.points),
                flag,
            )
        )
    return rows


HEADER = ("case", "runs", "first", "last", "last/first", "medians", "trend", "gate", "drift")


def _by_gpu(series: Sequence[Series]) -> dict[str, list[Series]]:
    grouped: dict[str, list[Series]] = {}
    for entry in series:
        grouped.setdefault(entry.gpu, []).append(entry)
    return grouped


def _span(series: Sequence[Series]) -> str:
    moments = sorted({point.at for entry in series for point in entry.points})
    runs = len({(point.at, point.report) for entry in series for point in entry.points})
    first, last = moments[0].strftime("%Y-%m-%d %H:%M"), moments[-1].strftime("%Y-%m-%d %H:%M")
    return f"{runs} run(s), {first} .. {last} UTC"


def history_text(series: Sequence[Series], rule: DriftRule) -> list[str]:
    """The trend table per GPU model, as plain text."""
    from ..session.report import format_table

    lines: list[str] = []
    for gpu, entries in _by_gpu(series).items():
        lines += [f"{entries[0].device} ({gpu}): {_span(entries)}", ""]
        lines += format_table(HEADER, trend_rows(entries, rule))
        lines.append("")
    lines.append(f"drift: {rule.describe()}; medians in run order, oldest first")
    return lines


def history_markdown(series: Sequence[Series], rule: DriftRule) -> list[str]:
    """The same tables in Markdown (job summaries, docs)."""
    lines: list[str] = []
    for gpu, entries in _by_gpu(series).items():
        lines += [f"**{entries[0].device}** (`{gpu}`): {_span(entries)}", ""]
        lines.append("| " + " | ".join(HEADER) + " |")
        lines.append("|" + "---|" * len(HEADER))
        for row in trend_rows(entries, rule):
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        lines.append("")
    lines.append(f"Drift: {rule.describe()}; medians in run order, oldest first.")
    return lines


def history_json(series: Sequence[Series], rule: DriftRule) -> str:
    """Every series with its points and trend, for scripts."""
    out: list[dict[str, Any]] = []
    for entry in series:
        found = entry.trend(rule)
        out.append(
            {
                "gpu": entry.gpu,
                "device": entry.device,
                "test_id": entry.test_id,
                "points": [
                    {
                        "at": point.at.isoformat(),
                        "median_ms": point.median_ms,
                        "verdict": point.verdict,
                        "commit": point.commit,
                    }
                    for point in entry.points
                ],
                "trend": None
                if found is None
                else {"step_per_run": found.step, "p_value": found.p_value, "drifting": found.drifting},
            }
        )
    return json.dumps({"rule": rule.describe(), "series": out}, indent=2)


def drifting(series: Sequence[Series], rule: DriftRule) -> list[Series]:
    return [entry for entry in series if (found := entry.trend(rule)) is not None and found.drifting]
