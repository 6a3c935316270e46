"""An experiment: which gated cases' launch outlasted their lead spin and their kernels together (no GPU).

A sample's lead spin keeps the GPU busy while the host launches the step; once it ends, the GPU runs what has
been launched and then waits. A case whose host launch time (its warm-up's 90th percentile, ``host_launch_ms`` in
its timing info) is longer than its lead plus its fastest span is flagged: its launch, spread over its kernels,
outlasts what the lead and the kernels hide, so its spans can hold host time and move with the host's hiccups.
The flag is conservative, and only an indication: a span that held a wait is longer by it, so a run starved in
every sample with a steady host hides from it, and the reports do not say how the launch is spread over the step.
This reads the JSON reports of gated runs, counts the flagged cases of each run, sets the failures beside them, and
says what lead the rule of ``measure/timing.py`` (:func:`~pytest_attnperf.measure.timing.lead_for`, past
``CudaSource.COVER_MS``) gives each flagged case from the same numbers, and the spin time that adds (the lead's
growth times the case's warm-up calls and samples; less than it will be where the fastest span held a wait).
Whether the rule's lead removes the wait is for a GPU run to show (``lead_overrun_share`` in newer reports).

    python benchmarks/experiments/starved_lead.py docs/results/h100/2026-12/unit-91514054/gated_suite \\
        > docs/results/h100/2026-12/unit-91514054/starved-lead.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pytest_attnperf.measure.timing import CudaSource, lead_for
from pytest_attnperf.runs.stored import read_text


def reports(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("gated-") and p.name.endswith((".json", ".json.gz")))


def lead_case(record: dict[str, Any]) -> dict[str, Any] | None:
    """One record's launch, lead and shortest span, whether it starved, and the lead the current rule gives it."""
    info, samples = record.get("timing_info") or {}, record.get("samples_ms") or []
    if "host_launch_ms" not in info or "lead_ms" not in info or not samples:
        return None
    host, lead, kernels = float(info["host_launch_ms"]), float(info["lead_ms"]), min(samples)
    margin, slack = CudaSource.LEAD_MARGIN, CudaSource.LEAD_SLACK_MS
    _, rule = lead_for([host], margin, slack, spans_ms=[kernels], cover_ms=CudaSource.COVER_MS)
    rule = min(max(rule, CudaSource.MIN_LEAD_MS), CudaSource.MAX_LEAD_MS)
    baseline = record.get("baseline_median_ms")
    return {
        "case": record["test_id"].split("::", 1)[-1],
        "host": host,
        "lead": lead,
        "kernels": kernels,
        "starved": host > lead + kernels,
        "ratio": record["median_ms"] / baseline if baseline and record.get("median_ms") else None,
        "failed": record.get("outcome") == "failed",
        "rule": rule,
        "extra_s": max(0.0, rule - lead) * (int(info.get("warmup_calls", 0)) + len(samples)) / 1e3,
    }


def summarise(paths: list[Path]) -> str:
    runs = [
        (path.name, [case for r in json.loads(read_text(path)).get("results", []) if (case := lead_case(r))])
        for path in paths
    ]
    lines = [
        "| report | cases with a lead | starved | failed | failed and starved | extra lead spin s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, cases in runs:
        starved = [c for c in cases if c["starved"]]
        failed = [c for c in cases if c["failed"]]
        lines.append(
            f"| {name} | {len(cases)} | {len(starved)} | {len(failed)} | {sum(c['starved'] for c in failed)} | "
            f"{sum(c['extra_s'] for c in cases):.1f} |"
        )
    lines += [
        "",
        "Starved: the launch (90th percentile) outlasted the lead and the fastest span together. Each starved case: "
        "its launch, lead and fastest span (ms) in the run where the launch outlasted them most, its median against "
        "the baseline's in each run (F: failed), and the lead the rule gives it.",
        "",
        "| case | runs starved | launch ms | lead ms | fastest span ms | median / baseline, each run | rule's lead ms |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    by_case: dict[str, list[dict[str, Any] | None]] = {}
    for index, (_, cases) in enumerate(runs):
        for case in cases:
            by_case.setdefault(case["case"], [None] * len(runs))[index] = case
    for name, seen in sorted(by_case.items()):
        starved = [c for c in seen if c and c["starved"]]
        if not starved:
            continue
        worst = max(starved, key=lambda c: c["host"] - c["lead"] - c["kernels"])
        ratios = ", ".join(
            "–" if c is None or c["ratio"] is None else f"{c['ratio']:.2f}" + (" F" if c["failed"] else "")
            for c in seen
        )
        lines.append(
            f"| `{name}` | {len(starved)} | {worst['host']:.2f} | {worst['lead']:.2f} | {worst['kernels']:.2f} | "
            f"{ratios} | {worst['rule']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a gated_suite folder: gated-N.json or .json.gz reports")
    arguments = parser.parse_args()
    found = reports(arguments.folder)
    if not found:
        parser.error(f"no gated-N.json(.gz) report in {arguments.folder}")
    print(f"# Starved leads: {arguments.folder}\n")
    print(summarise(found))


if __name__ == "__main__":
    main()
