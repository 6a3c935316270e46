"""An experiment: is the end of a steady warm-up already what the samples measure? (Replayed; no GPU.)

The warm-up runs the sampling's own loop until the median of its last three blocks is within 1 % of the three
before them (``measure.sampling.warm_up``). If those last blocks were the steady state, they could count as samples
and the warm-up would cost less (issue 22). This regroups each case's recorded warm-up samples into the rule's
blocks (``measure.sampling.BLOCK_MS``/``BLOCK_SAMPLES``) and compares the median of the samples with the median of
the samples plus the warm-up's last three blocks, by kernel length: a shift near zero would make the reuse free, and
the last column says how much warm-up time it would save.

    python benchmarks/experiments/warmup_tail_replay.py docs/results/h100/2026-12/unit-de84f1cb/gated_suite/gated-2.json.gz \\
        docs/results/h100/2026-12/unit-de84f1cb/gated_suite/gated-3.json.gz > docs/results/h100/2026-12/unit-de84f1cb/warmup-tail.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from pytest_attnperf.measure.sampling import BLOCK_MS, BLOCK_SAMPLES, HALF

BANDS = ((0.0, 0.1), (0.1, 1.0), (1.0, 10.0), (10.0, float("inf")))  # kernel median, ms


def blocks(times: list[float]) -> list[list[float]]:
    """The warm-up's samples grouped as the rule groups them: >= BLOCK_MS of kernel time or BLOCK_SAMPLES samples."""
    grouped: list[list[float]] = []
    current: list[float] = []
    for time in times:
        current.append(time)
        if sum(current) >= BLOCK_MS or len(current) >= BLOCK_SAMPLES:
            grouped.append(current)
            current = []
    return grouped


def case_shift(record: dict[str, Any]) -> dict[str, Any] | None:
    """A steady case's median shift if its warm-up's last HALF blocks joined its samples; None for other cases."""
    samples = record.get("samples_ms") or []
    grouped = blocks(record.get("warmup_ms") or [])
    if not samples or not (record.get("timing_info") or {}).get("steady") or len(grouped) < 2 * HALF:
        return None
    tail = [time for block in grouped[-HALF:] for time in block]
    median = statistics.median(samples)
    return {
        "test": str(record.get("test_id", "?")).split("::")[-1],
        "median_ms": median,
        "shift": statistics.median(tail + samples) / median - 1,
        "tail_samples": len(tail),
        "samples": len(samples),
        "tail_ms": sum(tail),
    }


def load(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            results: list[dict[str, Any]] = json.load(handle)["results"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"{path}: not a JSON report of pytest --attnperf ({error})") from None
    return results


def band_label(low: float, high: float) -> str:
    return f">= {low:g} ms" if high == float("inf") else f"{low:g}-{high:g} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports (.json or .json.gz) of gated runs")
    parser.add_argument("--top", type=int, default=8, help="the cases with the largest shifts to list (default 8)")
    args = parser.parse_args(argv)
    shifts = [shift for path in args.reports for record in load(path) if (shift := case_shift(record))]
    if not shifts:
        parser.error("no steady case with its warm-up samples in these reports")
    out = [
        "# The end of a steady warm-up against the samples (benchmarks/experiments/warmup_tail_replay.py)",
        "",
        f"Reports: {', '.join(path.as_posix() for path in args.reports)}. {len(shifts)} steady cases; the shift is",
        f"the median of the samples plus the warm-up's last {HALF} blocks over the median of the samples alone.",
        "",
        "| kernel median | cases | shift, median | shift, 90th percentile | largest shift | warm-up kernel time it would reuse, s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for low, high in BANDS:
        chosen = sorted((row for row in shifts if low <= row["median_ms"] < high), key=lambda row: abs(row["shift"]))
        if not chosen:
            continue
        sizes = [abs(row["shift"]) for row in chosen]
        out.append(
            f"| {band_label(low, high)} | {len(chosen)} | {statistics.median(sizes):.2%} | "
            f"{sizes[min(len(sizes) - 1, int(0.9 * len(sizes)))]:.2%} | {sizes[-1]:.2%} | "
            f"{sum(row['tail_ms'] for row in chosen) / 1e3:.2f} |"
        )
    out += [
        "",
        f"The {args.top} largest shifts:",
        "",
        "| test | kernel median ms | warm-up samples reused | samples | shift |",
    ]
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for row in sorted(shifts, key=lambda row: -abs(row["shift"]))[: args.top]:
        out.append(
            f"| {row['test']} | {row['median_ms']:.3f} | {row['tail_samples']} | {row['samples']} | {row['shift']:+.2%} |"
        )
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
