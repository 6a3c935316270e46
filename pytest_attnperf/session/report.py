"""What a run shows and writes: the terminal table, old -> new updates, JSON and Markdown (no torch import).

Everything here reads a :class:`RunReport`, a plain record the session fills at the end of a run.
"""

from __future__ import annotations

import datetime
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..gate.results import CaseRecord
from ..spec.settings import Settings
from ..spec.units import format_bytes, format_ms
from .output_paths import markdown_target, shown

if TYPE_CHECKING:
    from ..gate.baselines import Change


@dataclass
class RunReport:
    """What one run has to show: its results, where its baselines are, what changed and what was written."""

    settings: Settings
    results: list[CaseRecord]
    device: dict[str, Any]  # DeviceInfo.as_dict() of the device this process measured on
    baseline_label: str
    environment_changes: tuple[str, ...] = ()
    guard_problems: list[str] = field(default_factory=list)
    cpu_problems: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    update_errors: list[str] = field(default_factory=list)
    written_paths: list[Path] = field(default_factory=list)
    update_notes: list[str] = field(default_factory=list)
    calibration_lines: list[str] = field(default_factory=list)
    output_errors: list[str] = field(default_factory=list)
    cost: dict[str, Any] | None = None  # the run's timestamps and compile cache (cost.RunCost.record)


COLUMNS = (
    "test",
    "backend",
    "len",
    "median",
    "TFLOP/s",
    "GB/s",
    "peak mem",
    "baseline",
    "ratio",
    "at clock",
    "verdict",
)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"x{value:.3f}"


def _bandwidth(result: CaseRecord) -> str:
    """'812' GB/s, with the share of the device's copy bandwidth when it was measured: '812 (19%)'."""
    if not result.measurement.gbps:
        return "-"
    share = f" ({100 * result.measurement.bandwidth_share:.0f}%)" if result.measurement.bandwidth_share else ""
    return f"{result.measurement.gbps:.3g}{share}"


def _short_id(test_id: str) -> str:
    return test_id.split("::", 1)[-1]


def result_rows(results: Sequence[CaseRecord]) -> list[tuple[str, ...]]:
    """One row per case, in run order."""
    return [
        (
            _short_id(result.identity.test_id),
            result.identity.backend or "-",
            str(result.identity.seqlen or "-"),
            format_ms(result.measurement.median_ms),
            f"{result.measurement.tflops:.3g}" if result.measurement.tflops else "-",
            _bandwidth(result),
            format_bytes(result.measurement.peak_bytes),
            format_ms(result.decision.baseline_median_ms),
            _ratio(result.latency_ratio),
            _ratio(result.normalised_ratio),
            result.verdict(),
        )
        for result in results
    ]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def change_lines(changes: Sequence[Change]) -> list[str]:
    """'old -> new' for every updated entry; a replaced entry of another problem and a refused one say so."""
    from ..gate.identity import problem_differences

    lines = []
    for change in changes:
        new_median = change.new.median_ms
        old_median = change.old.median_ms if change.old else None
        if change.refused:
            lines.append(f"{_short_id(change.test_id)}: NOT recorded: {change.refused}")
            continue
        if change.old is None:
            what = f"{format_ms(new_median)} (new)"
        elif old_median and new_median:
            what = f"{format_ms(old_median)} -> {format_ms(new_median)} (x{new_median / old_median:.3f})"
        else:
            what = f"{format_ms(old_median)} -> {format_ms(new_median)}"
        memory = f"peak {format_bytes(change.old.peak_bytes if change.old else None)} -> {format_bytes(change.new.peak_bytes)}"
        fit = "" if change.new.fits else " [does not fit]"
        runs = (
            f", {change.new.runs} runs, spread {change.new.spread * 100:.2f} %" if change.new.spread is not None else ""
        )
        replaced = problem_differences(change.old.problem(), change.new.problem()) if change.old else []
        note = f"; replaces a baseline recorded for another problem ({', '.join(replaced)})" if replaced else ""
        lines.append(f"{_short_id(change.test_id)}: median {what}{runs}, {memory}{fit}{note}")
    return lines


def terminal_summary(terminalreporter: Any, run: RunReport) -> None:
    """The attnperf section at the end of the pytest output."""
    write = terminalreporter.write_line
    if run.results:
        devices = sorted({f"{result.identity.device} ({result.identity.device_id})" for result in run.results})
        terminalreporter.section(f"attnperf: {', '.join(devices)}")
        for line in format_table(COLUMNS, result_rows(run.results)):
            write(line)
        sources = sorted({result.measurement.clock_source for result in run.results if result.measurement.clock_source})
        write(
            f"baselines: {run.baseline_label}; clock: {run.results[0].provenance.clock or '-'}; "
            f"SM clock read by: {', '.join(sources) or '-'}"
        )
        changed = run.environment_changes
        if changed:
            write(f"environment changed since the baseline: {', '.join(changed)}", yellow=True)
        for problem in run.guard_problems:
            write(f"GPU guard: {problem}", yellow=True)
        for problem in run.cpu_problems:
            write(f"CPU busy: {problem}: its medians are the scheduler's as much as the kernel's", yellow=True)
        for result in run.results:
            for note in result.decision.notes:
                write(f"{_short_id(result.identity.test_id)}: {note}", yellow=True)
        missing = sum(1 for result in run.results if "NO BASELINE" in result.decision.verdicts.values())
        if missing and not run.settings.update:
            write(
                f"{missing} case(s) have no baseline in {run.baseline_label}: record them with "
                "`attnperf update` (policy: --attnperf-missing=" + run.settings.missing + ")",
                yellow=True,
            )
    if run.settings.update:
        terminalreporter.section("attnperf: baseline update")
        if not run.changes and not run.update_errors:
            write("nothing to update: no test measured anything")
        for line in change_lines(run.changes):
            write(line)
        if run.changes:
            write(f"wrote {len(run.changes)} entries to {run.settings.baselines_dir}")
        for note in run.update_notes:
            write(note)
        for error in run.update_errors:
            write(f"baseline update failed: {error}", red=True)
    if run.settings.calibrate:
        terminalreporter.section("attnperf: detection limits (attnperf calibrate)")
        for line in run.calibration_lines or ["no case was calibrated"]:
            write(line)
        for error in run.update_errors:
            write(f"could not store the detection limits: {error}", red=True)
    for path in run.written_paths:
        write(f"attnperf: wrote {path}")
    for error in run.output_errors:
        write(f"attnperf: {error}", red=True)


# Where CI systems name the commit a run measured: the history and the PR comment label runs by it.
COMMIT_VARIABLES = ("GITHUB_SHA", "CI_COMMIT_SHA", "BUILDKITE_COMMIT", "GIT_COMMIT")


def run_commit(environ: Mapping[str, str] = os.environ) -> str | None:
    return next((environ[name] for name in COMMIT_VARIABLES if environ.get(name)), None)


def skip_reason_lines(reasons: Sequence[str], *, limit: int = 15) -> list[str]:
    """One line per distinct skip reason with its count, the commonest first (pytest's -rs lists every test)."""
    counts = Counter(reasons)
    lines = [f"{count:>5} {reason}" for reason, count in counts.most_common(limit)]
    rest = counts.most_common()[limit:]
    if rest:
        lines.append(f"{sum(count for _, count in rest):>5} for {len(rest)} other reasons (pytest -rs lists each test)")
    return lines


def results_document(run: RunReport) -> dict[str, Any]:
    """The JSON report: when, which commit, device, environment and every case."""
    return {
        "schema": "attnperf-results/2",
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "commit": run_commit(),
        "device": run.device,
        "baselines": run.baseline_label,
        "environment_changes": list(run.environment_changes),
        "cost": run.cost,
        "results": [
            {
                **result.flat(),
                "latency_ratio": result.latency_ratio,
                "normalised_ratio": result.normalised_ratio,
                "memory_ratio": result.memory_ratio,
                "verdict": result.verdict(),
            }
            for result in run.results
        ],
    }


def markdown_summary(run: RunReport) -> str:
    """A Markdown table for CI job summaries ($GITHUB_STEP_SUMMARY)."""
    regressions = [
        result for result in run.results if {"REGRESSION", "MISMATCH"} & set(result.decision.verdicts.values())
    ]
    verdict = f"**{len(regressions)} regression(s)**" if regressions else "no regressions"
    lines = [
        f"## attnperf on {run.device.get('name', '?')}",
        "",
        f"{len(run.results)} cases, {verdict}; baselines `{run.baseline_label}`.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in result_rows(run.results):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    changed = run.environment_changes
    if changed:
        lines += ["", f"Environment changed since the baseline: {', '.join(changed)}."]
    return "\n".join(lines) + "\n"


def write_outputs(run: RunReport) -> tuple[list[Path], list[str]]:
    """Write the JSON and Markdown reports the options ask for; return what was written and what failed.

    The paths were checked at the start of the run; what fails only now (a full disk) is reported by
    name instead of ending the run with a traceback.
    """
    from ..gate.baselines import write_atomic
    from ..runs.exports import ExportError, export_targets, export_text

    written: list[Path] = []
    errors: list[str] = []
    settings = run.settings
    exports = export_targets(settings.bmf_path, settings.github_benchmark_path)
    document = results_document(run) if settings.json_path is not None or exports else {}
    if settings.json_path is not None:
        try:
            settings.json_path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(document, indent=2, allow_nan=False)
            settings.json_path.write_text(text, encoding="utf-8")
            written.append(settings.json_path)
        except OSError as error:
            errors.append(f"--attnperf-json: cannot write {shown(settings.json_path)}: {error.strerror or error}")
    for fmt, path, source in exports:
        try:
            write_atomic(path, export_text(document, fmt))
            written.append(path)
        except ExportError as error:
            errors.append(f"{source}: {error}")
        except OSError as error:
            errors.append(f"{source}: cannot write {shown(path)}: {error.strerror or error}")
    target = markdown_target(settings)
    if target is not None and run.results:
        path, source = target
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:  # the step summary is shared: append
                handle.write(markdown_summary(run))
            written.append(path)
        except OSError as error:
            errors.append(f"{source}: cannot write {shown(path)}: {error.strerror or error}")
    return written, errors
