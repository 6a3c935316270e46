"""Where a gated run's time goes, from its --attnperf-json report(s): compilation, warm-up, sampling, references.

    python3 benchmarks/gate_cost.py report.json [more.json ...] [--wall SECONDS ...]

Per report: the cases, the sampled kernel time (the sum of the kept samples), and the wall time of each
step summed over the cases (first call = compilation and autotuning; peak call; warm-up; sampling;
the dispatch fingerprint; the equivalence check with its references). With ``--wall`` (one value per
report, from the stage's log) the rest is start-up, collection and the session's own work.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

PHASES = ("first_call", "peak_call", "warmup", "sampling", "fingerprint", "equivalence")


def breakdown(document: dict[str, Any]) -> dict[str, float]:
    """Seconds per step, summed over the cases of one report."""
    totals = dict.fromkeys(PHASES, 0.0)
    totals["kernel"] = 0.0
    for case in document["results"]:
        phases = case.get("phases_ms") or {}
        info = case.get("timing_info") or {}
        totals["first_call"] += phases.get("first_call", 0.0) / 1e3
        totals["peak_call"] += phases.get("peak_call", 0.0) / 1e3
        totals["warmup"] += info.get("warmup_wall_ms", 0.0) / 1e3
        totals["sampling"] += info.get("sampling_wall_ms", 0.0) / 1e3
        totals["fingerprint"] += phases.get("fingerprint", 0.0) / 1e3
        totals["equivalence"] += phases.get("equivalence", 0.0) / 1e3
        totals["kernel"] += sum(case.get("samples_ms") or []) / 1e3
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--wall", type=float, nargs="*", default=[], help="each run's wall time in seconds")
    arguments = parser.parse_args(argv)
    documents = []
    for path in arguments.reports:
        with open(path, encoding="utf-8") as handle:
            documents.append(json.load(handle))
    for path, document in zip(arguments.reports, documents, strict=True):  # the line render_results.py reads
        failures = [case["test_id"] for case in document["results"] if case["verdict"] in ("REGRESSION", "MISMATCH")]
        print(f"{path}: {len(document['results'])} cases, sampled kernel time {breakdown(document)['kernel']:.1f} s, "
              f"failures {failures}")  # fmt: skip
    print()
    print("| report | cases | failures | wall s | first call s | peak call s | warm-up s | sampling s | "
          "fingerprint s | equivalence s | rest s | sampled kernel s |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for index, (path, document) in enumerate(zip(arguments.reports, documents, strict=True)):
        totals = breakdown(document)
        failures = [case["test_id"] for case in document["results"] if case["verdict"] in ("REGRESSION", "MISMATCH")]
        wall = arguments.wall[index] if index < len(arguments.wall) else None
        rest = wall - sum(totals[phase] for phase in PHASES) if wall is not None else None
        cells = [f"{totals[phase]:.1f}" for phase in PHASES]
        print(
            f"| {path} | {len(document['results'])} | {', '.join(failures) or 'none'} | "
            f"{'-' if wall is None else f'{wall:.1f}'} | {' | '.join(cells)} | "
            f"{'-' if rest is None else f'{rest:.1f}'} | {totals['kernel']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
