"""An experiment: where the machine reference should be read, from a live validation run with
``--attnperf-machine-reference=adjacent`` (no GPU). Each long case then holds two readings, right before it
(``gpu.reference``, what the gate used) and right after it (``gpu.reference_after``); the record runs' reports hold
the same for the baselines. For each placement this rebuilds the baselines from the record runs with that reading
and judges every trial's first measurement again, and it tables how closely each placement's clock follows the
unchanged cases' own clock (what a reading must do to excuse only the machine).

    python benchmarks/experiments/reference_placement.py docs/results/h100/2026-12/<folder> > <folder>/placement.md

The folder is a ``gate_live`` stage's output: ``record/report-run*.json[.gz]`` and ``raw/trials-*.json[.gz]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_attnperf.gate.baselines import BaselineEntry
from pytest_attnperf.gate.checks import GateContext
from pytest_attnperf.gate.evaluate import GatePolicy, decide
from pytest_attnperf.gate.recording import entry_from_runs
from pytest_attnperf.gate.results import CaseRecord
from pytest_attnperf.spec.marks import GateMarks, LatencySpec

MARKS = GateMarks(latency=LatencySpec(), memory=None, equivalence=None)
POLICY = GatePolicy(latency_tolerance=None, memory_tolerance=0.05, missing="warn", updating=False)
PLACEMENTS = ("before", "after")
EXTRA_ROWS = ("plus3", "plus5")  # gated against the unchanged row's entry (the same kernel before the extra work)


def _reports(folder: Path, pattern: str) -> Iterator[dict[str, Any]]:
    paths = sorted(folder.glob(pattern)) + sorted(folder.glob(pattern + ".gz"))
    if not paths:
        raise SystemExit(f"{folder}: no {pattern}[.gz] (a gate_live stage's output, run with adjacent readings)")
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8") as handle:
                yield json.load(handle)
        except (OSError, ValueError) as error:
            raise SystemExit(f"{path}: not a readable JSON report ({error})") from None


def placed(record: dict[str, Any], placement: str) -> CaseRecord:
    """The record as the gate reads it, its reference the reading of ``placement``, its verdicts dropped."""
    gpu = dict(record.get("gpu") or {})
    if placement == "after" and gpu.get("reference_after"):
        gpu["reference"] = gpu["reference_after"]
    return CaseRecord.from_dict({**record, "gpu": gpu}).with_fields(stages=[], verdicts={}, notes=[])


def case_and_row(test_id: str) -> tuple[str, str]:
    """('flash-attn-16K', 'unchanged') from '...::test_gate[flash-attn-16K-unchanged-t3]' (trial or not)."""
    parts = test_id.split("[", 1)[-1].rstrip("]").split("-")
    if parts[-1].startswith("t") and parts[-1][1:].isdigit():
        parts = parts[:-1]
    return "-".join(parts[:-1]), parts[-1]


def baselines(folder: Path, placement: str) -> dict[tuple[str, str], BaselineEntry]:
    """(case, row) -> the entry the record runs make with that placement's readings."""
    runs: dict[tuple[str, str], list[CaseRecord]] = defaultdict(list)
    for report in _reports(folder / "record", "report-run*.json"):
        for record in report["results"]:
            if record.get("median_ms") is not None:
                runs[case_and_row(record["test_id"])].append(placed(record, placement))
    entries = {key: entry_from_runs(records, "replay") for key, records in runs.items()}
    for (case, row), entry in list(entries.items()):
        if row == "unchanged":
            entries.update({(case, extra): entry for extra in EXTRA_ROWS})
    return entries


def first_measurements(folder: Path) -> list[dict[str, Any]]:
    """Each trial item's first record (a re-measured item appears again later in its report)."""
    firsts: dict[str, dict[str, Any]] = {}
    for report in _reports(folder / "raw", "trials-*.json"):
        for record in report["results"]:
            firsts.setdefault(record["test_id"], record)
    return list(firsts.values())


def verdicts(folder: Path) -> dict[tuple[str, str], dict[str, Counter[str]]]:
    """(case, row) -> placement -> verdict counts of the trials' first measurements."""
    counts: dict[tuple[str, str], dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    records = first_measurements(folder)
    for placement in PLACEMENTS:
        entries = baselines(folder, placement)
        for record in records:
            key = case_and_row(record["test_id"])
            entry = entries.get(key)
            if entry is None or record.get("median_ms") is None:
                continue
            result = placed(record, placement)
            decision = decide(result, MARKS, entry, POLICY, GateContext(record["test_id"], "-", "-"))
            counts[key][placement][str(decision.verdict_of("latency"))] += 1
    return counts


def tracking(folder: Path) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """case -> placement -> (the unchanged case's clock over its baseline's, the reading's over the baseline's)."""
    pairs: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    records = first_measurements(folder)
    for placement in PLACEMENTS:
        entries = baselines(folder, placement)
        for record in records:
            case, row = case_and_row(record["test_id"])
            entry = entries.get((case, row))
            clocks = [clock for clock in record.get("clock_mhz") or [] if clock]
            reading = placed(record, placement).measurement.gpu or {}
            then = (entry.reference or {}).get("clock_mhz") if entry else None
            now = (reading.get("reference") or {}).get("clock_mhz")
            if row != "unchanged" or not clocks or entry is None or not entry.clock_mhz or not then or not now:
                continue
            pairs[case][placement].append((statistics.median(clocks) / entry.clock_mhz, now / then))
    return pairs


def _correlation(pairs: list[tuple[float, float]]) -> str:
    if len(pairs) < 3 or len({x for x, _ in pairs}) < 2 or len({y for _, y in pairs}) < 2:
        return "–"
    return f"{statistics.correlation([x for x, _ in pairs], [y for _, y in pairs]):+.2f}"


def markdown(folder: Path) -> str:
    lines = [
        f"# Where to read the machine reference ({folder})",
        "",
        "Each long case's reading right before it and right after it, against the record runs' readings taken",
        "the same way. How closely each follows the unchanged case's own clock (both over their baseline's):",
        "",
        "| case | trials | case clock, median | before: reading's clock, median | before: correlation | "
        "after: reading's clock, median | after: correlation |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, by_placement in sorted(tracking(folder).items()):
        before, after = by_placement.get("before", []), by_placement.get("after", [])
        own = statistics.median(x for x, _ in before) if before else None
        lines.append(
            f"| {case} | {len(before)} | {'–' if own is None else f'x{own:.3f}'} | "
            + " | ".join(
                f"{'–' if not pairs else f'x{statistics.median(y for _, y in pairs):.3f}'} | {_correlation(pairs)}"
                for pairs in (before, after)
            )
            + " |"
        )
    lines += [
        "",
        "Verdicts of the trials' first measurements by the current gate, each placement's readings on both sides",
        "(REGRESSION on an unchanged row is a false alarm; AMBIGUOUS is measured again by the plugin):",
        "",
        "| case | row | before | after |",
        "|---|---|---|---|",
    ]
    for (case, row), by_placement in sorted(verdicts(folder).items()):
        cells = [", ".join(f"{name} {count}" for name, count in sorted(by_placement[p].items())) for p in PLACEMENTS]
        lines.append(f"| {case} | {row} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a gate_live stage's output run with adjacent readings")
    arguments = parser.parse_args(argv)
    if not arguments.folder.is_dir():
        parser.error(f"{arguments.folder}: not a folder")
    sys.stdout.write(markdown(arguments.folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
