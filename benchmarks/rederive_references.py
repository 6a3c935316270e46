"""A baseline file's machine references made again from the record runs that made them (no GPU).

Until December 2026 an entry's reference was the element-wise median of its runs' readings: the middle time of
one reading beside the middle clock of another, a machine nobody measured (``gate/machine.py``,
``median_reference``). This rewrites each entry's ``reference`` from the same readings, taken from the runs'
``--attnperf-json`` reports (``report-run*.json.gz`` in each folder given), through the rule the recorder uses
now; nothing else in the file changes. An entry is rewritten only where the folder holds the runs that made it:
as many runs as the entry says, and their readings, medianed the old way or the current one, give back the stored
reference. Every
other entry is left as it is and listed. The file is written atomically, through the plugin's writer.

    python benchmarks/rederive_references.py baselines/nvidia-h100-80gb-hbm3.yaml \\
        docs/results/h100/2026-12/record docs/results/h100/2026-12/record-transformers

``--check`` writes nothing and exits 1 if any entry would change.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from pytest_attnperf.gate.baselines import BaselineFileError, load_baseline, write_atomic
from pytest_attnperf.gate.machine import Reference, median_reference, reference_of
from pytest_attnperf.gate.recording import stored_reference


def readings_by_test(folders: list[Path]) -> dict[str, list[Reference]]:
    """Every run's reading next to each test, over the reports of the folders."""
    readings: dict[str, list[Reference]] = defaultdict(list)
    for folder in folders:
        reports = sorted(folder.glob("report-run*.json.gz"))
        if not reports:
            raise SystemExit(f"{folder}: no report-run*.json.gz (the --attnperf-json reports of the record runs)")
        for path in reports:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                for record in json.load(handle)["results"]:
                    reading = reference_of((record.get("gpu") or {}).get("reference"))
                    if reading is not None and record.get("median_ms") is not None:
                        readings[record["test_id"]].append(reading)
    return readings


def element_wise(readings: list[Reference]) -> dict[str, float]:
    """The old rule, to recognise the runs that made an entry."""

    def middle(values: list[float | None]) -> float | None:
        known = [value for value in values if value is not None]
        return statistics.median(known) if known else None

    ms = middle([reading.ms for reading in readings])
    assert ms is not None
    return stored_reference(
        Reference(ms, middle([r.clock_mhz for r in readings]), middle([r.power_w for r in readings]))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("folders", type=Path, nargs="+", help="folders of report-run*.json.gz")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if an entry would change")
    arguments = parser.parse_args(argv)
    try:
        baseline = load_baseline(arguments.baseline)
    except BaselineFileError as error:
        raise SystemExit(str(error)) from None
    if baseline is None:
        raise SystemExit(f"{arguments.baseline}: no such baseline file")
    readings = readings_by_test(arguments.folders)
    changed, kept = [], []
    for test_id, entry in baseline.entries.items():
        found = readings.get(test_id, [])
        new = median_reference(found)
        made_by_them = new is not None and dict(entry.reference or {}) in (element_wise(found), stored_reference(new))
        if entry.reference is None or len(found) != entry.runs or not made_by_them:
            kept.append(test_id)
            continue
        assert new is not None
        new_form = stored_reference(new)
        if new_form != dict(entry.reference):
            old_cycles = entry.reference["ms"] * entry.reference.get("clock_mhz", 1.0)
            changed.append((test_id, old_cycles, new.ms * (new.clock_mhz or 1.0)))
            baseline.entries[test_id] = dataclasses.replace(entry, reference=new_form)
    print(f"{arguments.baseline}: {len(changed)} references made again, {len(kept)} entries left as they are")
    for test_id, before, after in changed:
        print(f"  {test_id}: time x clock {before:.1f} -> {after:.1f} ms MHz")
    for test_id in kept:
        print(f"  left: {test_id} (no reference stored, or its runs are not in the folders given)")
    if arguments.check:
        return 1 if changed else 0
    if changed:
        write_atomic(arguments.baseline, baseline.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
