"""The `attnperf` commands over baseline files: show (one file as a table), diff (two files of one GPU model)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..gate.baselines import BaselineEntry, BaselineFile, BaselineFileError, load_baseline
from ..gate.diff import DEFAULT_THRESHOLD
from ..spec.option_values import path_text
from ..spec.units import argparse_type, format_bytes, format_ms, parse_fraction
from .common import CommandError


def _entry_rows(baseline: BaselineFile) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for test_id, entry in sorted(baseline.entries.items()):
        rows.append(
            (
                test_id.split("::", 1)[-1],
                entry.backend or "-",
                format_ms(entry.median_ms),
                format_bytes(entry.peak_bytes),
                "yes" if entry.fits else "no",
                entry.recorded_at,
                _power(entry),
            )
        )
    return rows


def _power(entry: BaselineEntry) -> str:
    """Mean power while running, with its log-sd between the recorded runs: '612 W ±1.2 %'."""
    if entry.power_w is None:
        return "-"
    return f"{entry.power_w:.0f} W" + (f" ±{entry.power_spread * 100:.1f} %" if entry.power_spread is not None else "")


def _load_or_exit(path: Path) -> BaselineFile:
    try:
        baseline = load_baseline(path)
    except BaselineFileError as error:
        raise SystemExit(f"attnperf: {error}") from None
    if baseline is None:
        raise SystemExit(f"attnperf: no baseline file at {path}")
    return baseline


def command_show(arguments: argparse.Namespace) -> int:
    from ..session.report import format_table

    baseline = _load_or_exit(Path(arguments.file))
    print(f"{baseline.path}: {baseline.device.get('name')}, {len(baseline.entries)} entries")
    recorded = ", ".join(
        f"{key} {value}" for key, value in baseline.environment.items() if value and not isinstance(value, dict)
    )
    print(f"recorded with: {recorded}")
    for key, value in baseline.environment.items():
        if isinstance(value, dict) and value:  # gpu_state: one readable line, not a Python dict
            print(f"{key.replace('_', ' ')}: {_readable_fields(value)}")
    print()
    header = ("test", "backend", "median", "peak mem", "fits", "recorded", "power (run spread)")
    for line in format_table(header, _entry_rows(baseline)):
        print(line)
    return 0


_UNIT_ENDINGS = (("_mhz", "MHz"), ("_w", "W"), ("_c", "C"))


def _readable_fields(fields: dict[str, Any]) -> str:
    """{'sm_clock_mhz': 1980, 'throttle_reasons': []} -> 'sm clock 1980 MHz; throttle reasons none'."""
    parts = []
    for key, value in fields.items():
        name, unit = key, ""
        for ending, symbol in _UNIT_ENDINGS:
            if key.endswith(ending):
                name, unit = key.removesuffix(ending), f" {symbol}"
                break
        shown_value = (", ".join(map(str, value)) or "none") if isinstance(value, (list, tuple)) else f"{value}{unit}"
        parts.append(f"{name.replace('_', ' ')} {shown_value}")
    return "; ".join(parts)


def command_diff(arguments: argparse.Namespace) -> int:
    from ..gate.diff import device_identity, device_mismatch, diff_baselines
    from ..session.report import format_table

    old, new = _load_or_exit(Path(arguments.old)), _load_or_exit(Path(arguments.new))
    mismatch = device_mismatch(old, new)
    if mismatch and not arguments.any_gpu:
        raise CommandError(mismatch)
    if mismatch:
        print(f"two GPU models (--any-gpu): {device_identity(old.device)} -> {device_identity(new.device)}\n")
    diff = diff_baselines(old, new, threshold=arguments.threshold, show_all=arguments.all)
    if diff.rows:
        for line in format_table(("test", "median", "ratio", "peak memory", "ratio"), diff.rows):
            print(line)
        print()
    print(diff.summary(arguments.threshold, shown_all=arguments.all))
    return 0


def add_baseline_file_commands(commands: Any) -> None:
    """show, diff: they read baselines/<gpu>.yaml files, not a run's reports."""
    show = commands.add_parser("show", help="print a baseline file")
    show.add_argument(
        "file", type=argparse_type(path_text("baseline file", required=True)), help="a baselines/<gpu>.yaml file"
    )
    diff = commands.add_parser(
        "diff",
        help="compare two baseline files of one GPU model entry by entry: what changed beyond a threshold, "
        "what was added or removed, and entries that measured another problem (never given a ratio)",
    )
    diff.add_argument("old", type=argparse_type(path_text("old baseline file", required=True)))
    diff.add_argument("new", type=argparse_type(path_text("new baseline file", required=True)))
    diff.add_argument(
        "--threshold",
        type=argparse_type(parse_fraction, "threshold"),
        default=DEFAULT_THRESHOLD,
        help="list an entry when its median or peak memory moved by more than this (default 5%%; 0 lists every change)",
    )
    diff.add_argument("--all", action="store_true", help="list every entry compared, changed or not")
    diff.add_argument(
        "--any-gpu", action="store_true", help="compare files of two GPU models (refused by default: not a regression)"
    )
