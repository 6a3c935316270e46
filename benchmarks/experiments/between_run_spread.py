"""An experiment: how far an unchanged case's median moves between pytest processes, by kernel length (no GPU).

The gate's tolerance comes from a baseline's between-run spread, shrunk towards one suite-wide prior
(``gate.statistics.GateParams.prior_sd``). Three record runs see little of a case's between-process noise; this reads
every committed ``--attnperf-json`` report of one GPU model's kernel suite (record runs, cost runs, gated runs, on
every unit) and prints, per case, the log standard deviation of its raw medians, then the root mean square of those
per kernel-length class and backend kind (a chain of small kernels: eager and sdpa-math; one fused kernel: the
rest). Raw medians, not normalised: the capped cases' spread includes their clocks.

    python benchmarks/experiments/between_run_spread.py docs/results/h100/2026-12 \\
        > docs/results/h100/2026-12/between-run-spread.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

CHAINS = ("eager", "sdpa-math")  # backends whose step is a chain of small kernels
CLASSES = ((0.1, "under 0.1 ms"), (1.0, "0.1-1 ms"), (math.inf, "1 ms and over"))


def medians_by_case(folder: Path) -> tuple[dict[str, list[float]], list[tuple[str, str]]]:
    """Every report's median of every kernel-suite case, and (report, unit) of the reports read."""
    medians: dict[str, list[float]] = defaultdict(list)
    reports = []
    for path in sorted(folder.rglob("*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            try:
                document = json.load(handle)
            except json.JSONDecodeError:
                continue
        if not isinstance(document, dict) or "results" not in document:
            continue
        cases = [r for r in document["results"] if "test_attention.py" in r.get("test_id", "")]
        if not cases:
            continue
        reports.append((path.relative_to(folder).as_posix(), str((document.get("device") or {}).get("uuid"))[:12]))
        for record in cases:
            if isinstance(record.get("median_ms"), (int, float)) and record["median_ms"] > 0:
                medians[record["test_id"].split("::", 1)[-1]].append(record["median_ms"])
    return medians, reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--min-runs", type=int, default=6)
    arguments = parser.parse_args()
    medians, reports = medians_by_case(arguments.folder)
    rows = []
    for case, values in medians.items():
        if len(values) >= arguments.min_runs:
            logs = [math.log(value) for value in values]
            rows.append((statistics.stdev(logs), statistics.median(values), len(values), case))
    print(f"# Between-process spread of unchanged medians, {arguments.folder.as_posix()}\n")
    print(f"{len(reports)} reports: " + ", ".join(f"`{name}` ({unit})" for name, unit in reports) + "\n")
    print("| kernel length | backend kind | cases | RMS log-sd | largest | its case |")
    print("|---|---|---:|---:|---:|---|")
    for (upper, label), lower in zip(CLASSES, (0.0, 0.1, 1.0), strict=True):
        for kind in ("chain of small kernels", "one fused kernel"):
            chain = kind.startswith("chain")
            group = [
                row
                for row in rows
                if lower <= row[1] < upper and any(f"-{b}-" in row[3] or f"[{b}-" in row[3] for b in CHAINS) == chain
            ]
            if not group:
                continue
            rms = math.sqrt(statistics.fmean([row[0] ** 2 for row in group]))
            top = max(group)
            print(f"| {label} | {kind} | {len(group)} | {rms:.2%} | {top[0]:.2%} | `{top[3]}` |")
    print("\n| case | runs | median ms | log-sd |")
    print("|---|---:|---:|---:|")
    for spread, median, count, case in sorted(rows, reverse=True)[:20]:
        print(f"| `{case}` | {count} | {median:.4g} | {spread:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
