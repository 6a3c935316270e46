"""The `attnperf` commands over stored JSON reports (--attnperf-json): export, compare, history, merge."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..spec.units import argparse_type, positive_int
from .common import CommandError, output_file, stored_report


def command_export(arguments: argparse.Namespace) -> int:
    """A stored JSON report in a dashboard's format (the same converter --attnperf-bmf uses)."""
    from ..gate.baselines import write_atomic
    from ..runs.exports import ExportError, export_text

    target = output_file(arguments.output, "-o")
    report = stored_report(arguments.report)
    try:
        text = export_text(report.document, arguments.format)
    except ExportError as error:
        raise CommandError(f"{report.path}: {error}") from None
    if target is None:
        sys.stdout.write(text)
    else:
        write_atomic(target, text)
        print(f"wrote {target}")
    return 0


def command_compare(arguments: argparse.Namespace) -> int:
    """BASE vs HEAD as a PR comment's Markdown; exit 1 when HEAD's gate failed a case."""
    from ..runs.compare import exit_status, markdown, pair_cases

    target = output_file(arguments.output, "-o")
    base, head = stored_report(arguments.base), stored_report(arguments.head)
    rows = pair_cases(base, head)
    text = markdown(base, head, rows)
    if target is None:
        sys.stdout.write(text)
    else:
        from ..gate.baselines import write_atomic

        write_atomic(target, text)
        print(f"wrote {target}")
    return exit_status(rows)


def command_history(arguments: argparse.Namespace) -> int:
    """Each case's medians across the stored reports of CI runs, per GPU model, with a drift flag."""
    from ..runs.drift import DriftRule
    from ..runs.history import build_series, drifting, find_reports, history_json, history_markdown, history_text
    from ..runs.plots import PLOTS_NEED, plot_families, plots_available
    from ..runs.stored import ReportError
    from ..session.output_paths import OutputPathError, check_folder_target

    plot_dir = Path(os.path.abspath(arguments.plot_dir)) if arguments.plot_dir else None
    if plot_dir is not None:
        try:
            check_folder_target(plot_dir, "--plot-dir")
        except OutputPathError as error:
            raise CommandError(str(error)) from None
    try:
        reports, skipped = find_reports([Path(path) for path in arguments.paths])
    except ReportError as error:
        raise CommandError(str(error)) from None
    where = ", ".join(arguments.paths)
    if not reports:
        others = f" ({len(skipped)} other JSON file(s) skipped)" if skipped else ""
        raise CommandError(f"found no JSON report written by --attnperf-json under {where}{others}")
    series = build_series(reports)
    if not series:
        raise CommandError(f"no measured case in the {len(reports)} report(s) under {where}")
    rule = DriftRule(min_runs=arguments.min_runs, min_step=arguments.min_step)
    if arguments.format == "json":
        print(history_json(series, rule))
    else:
        lines = history_markdown(series, rule) if arguments.format == "markdown" else history_text(series, rule)
        print("\n".join(lines))
    if skipped:
        print(f"skipped {len(skipped)} JSON file(s) that are not attnperf reports", file=sys.stderr)
    if plot_dir is not None:
        if plots_available():
            for path in plot_families(series, plot_dir, rule):
                print(f"wrote {path}", file=sys.stderr)
        else:
            print(f"attnperf history: no plots written; {PLOTS_NEED}", file=sys.stderr)
    return 1 if arguments.fail_on_drift and drifting(series, rule) else 0


def command_merge(arguments: argparse.Namespace) -> int:
    """Several runners' reports of one run as one report, each case under its GPU model."""
    from ..gate.baselines import write_atomic
    from ..runs.merge import MergeError, merge_reports, merge_summary

    target = output_file(arguments.output, "-o")
    assert target is not None
    reports = [stored_report(path) for path in arguments.reports]
    try:
        document = merge_reports(reports)
    except MergeError as error:
        raise CommandError(str(error)) from None
    write_atomic(target, json.dumps(document, indent=2, allow_nan=False) + "\n")
    for line in merge_summary(document):
        print(line)
    print(f"wrote {target}")
    return 0


def add_run_report_commands(commands: Any) -> None:
    """export, compare, history, merge: they read the JSON reports that --attnperf-json writes."""
    from ..runs.drift import DriftRule
    from ..spec.units import parse_fraction

    export = commands.add_parser(
        "export",
        help="convert a JSON report (--attnperf-json) for a dashboard: Bencher (bmf) or github-action-benchmark",
    )
    export.add_argument("--format", required=True, choices=("bmf", "github-benchmark"), help="the dashboard's format")
    export.add_argument("report", help="a JSON report written by --attnperf-json")
    export.add_argument("-o", "--output", default=None, help="file to write (default: standard output)")
    compare = commands.add_parser(
        "compare",
        help="BASE vs HEAD report as the Markdown of a pull-request comment; exit 1 when HEAD's gate found a "
        "regression or mismatch, 2 on unusable input",
    )
    compare.add_argument("base", help="the base branch's JSON report")
    compare.add_argument("head", help="this change's JSON report")
    compare.add_argument("-o", "--output", default=None, help="file to write (default: standard output)")
    history = commands.add_parser(
        "history", help="each case's medians across stored JSON reports of CI runs, per GPU model, with a drift flag"
    )
    history.add_argument("paths", nargs="+", metavar="PATH", help="folders (searched recursively) or JSON report files")
    history.add_argument("--format", choices=("text", "markdown", "json"), default="text", help="default text")
    history.add_argument("--plot-dir", default=None, help="also write one PNG per GPU model and test function here")
    defaults = DriftRule()
    history.add_argument(
        "--min-runs",
        type=argparse_type(positive_int("min-runs")),
        default=defaults.min_runs,
        help=f"runs a case needs before its drift is tested (default {defaults.min_runs})",
    )
    history.add_argument(
        "--min-step",
        type=argparse_type(parse_fraction),
        default=defaults.min_step,
        help=f"smallest steady change per run that is flagged, e.g. 0.5%% (default {100 * defaults.min_step:g}%%)",
    )
    history.add_argument("--fail-on-drift", action="store_true", help="exit 1 when a case drifts")
    merge = commands.add_parser("merge", help="merge several runners' JSON reports of one run into one report")
    merge.add_argument("reports", nargs="+", metavar="REPORT", help="JSON reports written by --attnperf-json")
    merge.add_argument("-o", "--output", required=True, help="the merged report to write")
