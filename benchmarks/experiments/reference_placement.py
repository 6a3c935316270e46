"""An experiment: where the machine reference should be read, from a live validation run with
``--attnperf-machine-reference=adjacent`` (no GPU). Each long case then holds two readings, right before it
(``gpu.reference``, what the gate used) and right after it (``gpu.reference_after``); the record runs' reports hold
the same for the baselines. For each placement this rebuilds the baselines from the record runs with that reading
and judges every trial's first measurement again, and it tables how closely each placement's clock follows the
unchanged cases' own clock (what a reading must do to excuse only the machine).

    python benchmarks/experiments/reference_placement.py docs/results/h100/2026-12/<folder> > <folder>/placement.md

The folder is a ``gate_live`` stage's output: ``record/report-run*.json[.gz]`` and ``raw/trials-*.json[.gz]``.
An item the plugin measured again (ambiguous at first) keeps only its last measurement's samples and readings in
the report, so it cannot be judged at its first: those are counted apart, per row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_attnperf.gate.baselines import BaselineEntry
from pytest_attnperf.gate.checks import GateContext
from pytest_attnperf.gate.evaluate import GatePolicy, decide
from pytest_attnperf.gate.recording import entry_from_runs
from pytest_attnperf.gate.results import CaseRecord
from pytest_attnperf.runs.stored import ReportError, load_report
from pytest_attnperf.spec.marks import GateMarks, LatencySpec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gate_validation"))
from live_cases import EXTRA, parse_item_id  # the live validation's ids and rows

MARKS = GateMarks(latency=LatencySpec(), memory=None, equivalence=None)
POLICY = GatePolicy(latency_tolerance=None, memory_tolerance=0.05, missing="warn", updating=False)
PLACEMENTS = ("before", "after")
Key = tuple[str, str]  # (case, row)


def records_of(folder: Path, pattern: str) -> list[dict[str, Any]]:
    """Every case record of the reports matching ``pattern`` (gzipped or not) in ``folder``; a bad one by name (a
    report, or a record whose id is no live validation item's)."""
    paths = sorted({*folder.glob(pattern), *folder.glob(pattern + ".gz")})
    if not paths:
        raise SystemExit(f"{folder}: no {pattern}[.gz] (a gate_live stage's output, run with adjacent readings)")
    records = []
    for path in paths:
        try:
            cases = load_report(path).cases
        except ReportError as error:
            raise SystemExit(str(error)) from None
        for record in cases:
            if not isinstance(record, dict) or not isinstance(record.get("test_id"), str):
                raise SystemExit(f"{path}: a result without a test_id: not a report of the live validation")
            try:
                parse_item_id(record["test_id"])
            except ValueError as error:
                raise SystemExit(f"{path}: {error}") from None
        records += cases
    return records


def placed(record: dict[str, Any], placement: str) -> CaseRecord:
    """The record as the gate reads it, its reference the reading of ``placement``, its verdicts dropped."""
    gpu = dict(record.get("gpu") or {})
    if placement == "after" and gpu.get("reference_after"):
        gpu["reference"] = gpu["reference_after"]
    return CaseRecord.from_dict({**record, "gpu": gpu}).with_fields(stages=[], verdicts={}, notes=[])


def case_and_row(test_id: str) -> Key:
    """('flash-attn-16K', 'unchanged') from '...::test_gate[flash-attn-16K-unchanged-t3]' (trial or not)."""
    case, row, _trial = parse_item_id(test_id)
    return case, row


def long_case(record: dict[str, Any]) -> bool:
    """Read next to it (a long case under the adjacent setting): it holds a reading after it."""
    return bool((record.get("gpu") or {}).get("reference_after"))


class LiveRun:
    """A gate_live folder's record runs and trials, read once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.record_runs = [r for r in records_of(folder / "record", "report-run*.json") if r.get("median_ms")]
        trials = records_of(folder / "raw", "trials-*.json")
        if not any(long_case(record) for record in [*self.record_runs, *trials]):
            raise SystemExit(
                f"{folder}: no case holds a reading after it (gpu.reference_after): the run was not made with "
                "--attnperf-machine-reference=adjacent, so the two placements cannot be told apart"
            )
        # a re-measured item's record holds its last measurement's samples and readings, not its first's
        self.first = [r for r in trials if r.get("median_ms") is not None and len(r.get("stages") or []) <= 1]
        self.remeasured = Counter(
            case_and_row(r["test_id"]) for r in trials if r.get("median_ms") and len(r.get("stages") or []) > 1
        )
        self.entries = {placement: self._baselines(placement) for placement in PLACEMENTS}

    def _baselines(self, placement: str) -> dict[Key, BaselineEntry]:
        """(case, row) -> the entry the record runs make with that placement's readings."""
        runs: dict[Key, list[CaseRecord]] = defaultdict(list)
        for record in self.record_runs:
            runs[case_and_row(record["test_id"])].append(placed(record, placement))
        entries = {key: entry_from_runs(records, "replay") for key, records in runs.items()}
        for (case, row), entry in list(entries.items()):
            if row == "unchanged":
                entries.update({(case, extra): entry for extra in EXTRA})
        return entries

    def verdicts(self) -> dict[Key, dict[str, Counter[str]]]:
        """(case, row) -> placement -> verdict counts of the trials' first measurements."""
        counts: dict[Key, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        for placement in PLACEMENTS:
            for record in self.first:
                key = case_and_row(record["test_id"])
                entry = self.entries[placement].get(key)
                if entry is None:
                    continue
                decision = decide(
                    placed(record, placement), MARKS, entry, POLICY, GateContext(record["test_id"], "-", "-")
                )
                counts[key][placement][str(decision.verdict_of("latency"))] += 1
        return counts

    def tracking(self) -> dict[str, dict[str, list[tuple[float, float]]]]:
        """Long case -> placement -> (its unchanged clock over its baseline's, the reading's clock over the
        baseline's reading's), over the first measurements of the unchanged row."""
        pairs: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
        for placement in PLACEMENTS:
            for record in self.first:
                case, row = case_and_row(record["test_id"])
                entry = self.entries[placement].get((case, row))
                clocks = [clock for clock in record.get("clock_mhz") or [] if clock]
                reading = placed(record, placement).measurement.gpu or {}
                then = (entry.reference or {}).get("clock_mhz") if entry else None
                now = (reading.get("reference") or {}).get("clock_mhz")
                if row != "unchanged" or not long_case(record) or not clocks or entry is None:
                    continue
                if entry.clock_mhz and then and now:
                    pairs[case][placement].append((statistics.median(clocks) / entry.clock_mhz, now / then))
        return pairs


def _correlation(pairs: Sequence[tuple[float, float]]) -> str:
    if len(pairs) < 3 or len({x for x, _ in pairs}) < 2 or len({y for _, y in pairs}) < 2:
        return "–"
    return f"{statistics.correlation([x for x, _ in pairs], [y for _, y in pairs]):+.2f}"


def _median_ratio(values: list[float]) -> str:
    return f"x{statistics.median(values):.3f}" if values else "–"


def markdown(run: LiveRun) -> str:
    lines = [
        f"# Where to read the machine reference ({run.folder})",
        "",
        "Each long case's reading right before it and right after it, against the record runs' readings taken",
        "the same way. How closely each follows the unchanged case's own clock (both over their baseline's):",
        "",
        "| case | trials | case clock, median | before: reading's clock, median | before: correlation | "
        "after: reading's clock, median | after: correlation |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, per_placement in sorted(run.tracking().items()):
        before, after = per_placement.get("before", []), per_placement.get("after", [])
        cells = [_median_ratio([x for x, _ in before])]
        for pairs in (before, after):
            cells += [_median_ratio([y for _, y in pairs]), _correlation(pairs)]
        lines.append(f"| {case} | {len(before)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Verdicts of the trials' first measurements by the current gate, each placement's readings on both sides",
        "(REGRESSION on an unchanged row is a false alarm; ambiguous is measured again by the plugin). Items the",
        "plugin measured again keep only their last measurement in the report and are counted apart:",
        "",
        "| case | row | before | after | measured again (not judged here) |",
        "|---|---|---|---|---|",
    ]
    verdicts = run.verdicts()
    for key in sorted({*verdicts, *run.remeasured}):  # a row whose every item was measured again is listed too
        counts = verdicts.get(key, {})
        cells = [
            ", ".join(f"{name} {count}" for name, count in sorted(counts.get(p, Counter()).items())) or "–"
            for p in PLACEMENTS
        ]
        lines.append(f"| {key[0]} | {key[1]} | {cells[0]} | {cells[1]} | {run.remeasured.get(key, 0)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a gate_live stage's output run with adjacent readings")
    arguments = parser.parse_args(argv)
    if not arguments.folder.is_dir():
        parser.error(f"{arguments.folder}: not a folder")
    sys.stdout.write(markdown(LiveRun(arguments.folder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
