"""An experiment: the runs of one `attnperf update --runs N` judged by the current gate, each against a baseline
made from the other runs (leave one out), with no GPU. Every run measured the same unchanged kernels, so every
verdict other than ok is a false alarm the gate would raise on that card (an ambiguous one is measured again by
the plugin before it fails).

    python benchmarks/experiments/rejudge_record_runs.py docs/results/h100/2026-12/record > docs/results/h100/2026-12/record-rejudged.md

With ``--live SAMPLES BASELINES`` it judges instead the first measurement of each trial of a live gate validation
(``gate-validation-samples.json.gz`` against the baseline file it recorded), counting each row's verdicts: what the
current gate says of the same samples.

With ``--gated BASELINES REPORT...`` it judges the first measurement of every case of gated runs (their
``--attnperf-json`` reports, gzipped or not) against the baseline file they were gated on: each case's stage-1 ratio
as the run decided it beside the current gate's, and the verdicts of both.

    python benchmarks/experiments/rejudge_record_runs.py --gated baselines/nvidia-h100-80gb-hbm3.yaml \
        docs/results/h100/2026-12/unit-e1aaaaaa/gated_suite/gated-*.json.gz > docs/results/h100/2026-12/unit-e1aaaaaa/rejudged.md
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter, defaultdict
from pathlib import Path

from pytest_attnperf.gate.baselines import load_baseline
from pytest_attnperf.gate.checks import GateContext
from pytest_attnperf.gate.evaluate import Decision, GatePolicy, decide
from pytest_attnperf.gate.recording import entry_from_runs
from pytest_attnperf.gate.results import CaseRecord
from pytest_attnperf.spec.marks import GateMarks, LatencySpec

MARKS = GateMarks(latency=LatencySpec(), memory=None, equivalence=None)
POLICY = GatePolicy(latency_tolerance=None, memory_tolerance=0.05, missing="warn", updating=False)


def load_runs(folder: Path) -> list[dict[str, CaseRecord]]:
    runs = []
    for path in sorted(folder.glob("report-run*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            results = json.load(handle)["results"]
        runs.append({record["test_id"]: CaseRecord.from_dict(record) for record in results})
    return runs


def judge(runs: list[dict[str, CaseRecord]]) -> list[tuple[int, str, Decision, CaseRecord]]:
    """Each run's measured cases against the entry the other runs make."""
    judged = []
    for index, run in enumerate(runs):
        others = [other for position, other in enumerate(runs) if position != index]
        for test_id, result in run.items():
            rest = [other[test_id] for other in others if test_id in other]
            if len(rest) < 2 or not result.measurement.fits or result.measurement.median_ms is None:
                continue
            entry = entry_from_runs(rest, "replay")
            judged.append(
                (index + 1, test_id, decide(result, MARKS, entry, POLICY, GateContext(test_id, "-", "-")), result)
            )
    return judged


def live_rows(samples: Path, baselines: Path) -> dict[str, Counter[str]]:
    """Each live trial's first measurement (its records with their stages dropped) judged again, counted per row."""
    baseline = load_baseline(baselines)
    assert baseline is not None, baselines
    with gzip.open(samples, "rt", encoding="utf-8") as handle:
        trials = json.load(handle)
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for trial in trials:
        for record in trial["results"]:
            result = CaseRecord.from_dict(record).with_fields(stages=[], verdicts={}, notes=[])
            test_id = result.identity.test_id
            entry = baseline.entries.get(test_id)
            if entry is None or result.measurement.median_ms is None:
                continue
            decision = decide(result, MARKS, entry, POLICY, GateContext(test_id, "-", "-"))
            rows[test_id.split("[", 1)[-1].rstrip("]")][str(decision.verdict_of("latency"))] += 1
    return rows


def gated_rows(baselines: Path, reports: list[Path]) -> list[tuple[str, str, float, float, float, str, str]]:
    """(report, case, raw ratio, the run's stage-1 ratio, the current gate's, the run's first verdict, the current
    gate's) for every gated case of the reports."""
    baseline = load_baseline(baselines)
    assert baseline is not None, baselines
    rows = []
    for report in reports:
        opener = gzip.open if report.suffix == ".gz" else open
        with opener(report, "rt", encoding="utf-8") as handle:
            records = json.load(handle)["results"]
        for record in records:
            first = next((stage for stage in record.get("stages") or [] if stage.get("stage") == 1), None)
            entry = baseline.entries.get(record["test_id"])
            if first is None or entry is None or record.get("median_ms") is None:
                continue
            result = CaseRecord.from_dict(record).with_fields(stages=[], verdicts={}, notes=[])
            decision = decide(result, MARKS, entry, POLICY, GateContext(record["test_id"], "-", "-"))
            latency = decision.latency
            assert latency is not None
            rows.append((
                report.name.split(".")[0], record["test_id"].split("::", 1)[-1], first["raw_ratio"], first["ratio"],
                latency.ratio, first["verdict"], str(latency.verdict.value),
            ))  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("record", type=Path, nargs="?", help="a record stage's folder (report-run<k>.json.gz)")
    parser.add_argument("--live", type=Path, nargs=2, metavar=("SAMPLES", "BASELINES"))
    parser.add_argument("--gated", type=Path, nargs="+", metavar="BASELINES REPORT")
    arguments = parser.parse_args()
    if arguments.gated:
        baselines, *reports = arguments.gated
        if not reports:
            parser.error("--gated needs the baseline file, then one or more --attnperf-json reports")
        rows = gated_rows(baselines, reports)
        moved = [row for row in rows if abs(row[4] / row[3] - 1) > 0.002 or row[5] != row[6]]
        print(f"# Gated runs' first measurements judged again by the current gate, against {baselines.as_posix()}\n")
        for name in sorted({row[0] for row in rows}):
            mine = [row for row in rows if row[0] == name]
            over = {label: sum(1 for row in mine if row[index] > 1.03) for label, index in (("then", 3), ("now", 4))}
            not_pass = {
                label: sum(1 for row in mine if row[index] != "pass") for label, index in (("then", 5), ("now", 6))
            }
            print(
                f"- `{name}`: {len(mine)} cases; first measurements over x1.030: {over['then']} then, {over['now']} now; "
                f"not passed at once: {not_pass['then']} then, {not_pass['now']} now"
            )
        print(f"\n{len(moved)} first measurements whose ratio moved by more than 0.2 % or whose verdict changed:\n")
        print("| run | case | raw ratio | ratio then | ratio now | verdict then | verdict now |")
        print("|---|---|---:|---:|---:|---|---|")
        for name, case, raw_ratio, then, now, verdict_then, verdict_now in sorted(moved, key=lambda row: -row[3]):
            print(f"| {name} | `{case}` | {raw_ratio:.3f} | {then:.3f} | {now:.3f} | {verdict_then} | {verdict_now} |")
        return 0
    if arguments.live:
        print(f"# The live trials' first measurements ({arguments.live[0].as_posix()}) judged by the current gate\n")
        print("| case and row | verdicts |")
        print("|---|---|")
        for row, counts in sorted(live_rows(*arguments.live).items()):
            print(f"| {row} | {', '.join(f'{word} {count}' for word, count in sorted(counts.items()))} |")
        return 0
    folder = arguments.record
    runs = load_runs(folder)
    judged = judge(runs)
    flagged = [row for row in judged if row[2].verdict_of("latency") not in ("ok", None)]
    print(f"# {len(runs)} record runs of {folder.as_posix()}, each judged against the other runs\n")
    print(f"{len(judged)} judgements; {len(flagged)} not ok (every one a false alarm or a re-measurement):\n")
    print("| run | case | verdict | raw ratio | normalised ratio | decided by |")
    print("|---:|---|---|---:|---:|---|")
    for run, test_id, decision, _ in flagged:
        latency = decision.latency
        raw = f"{latency.raw_ratio:.3f}" if latency is not None and latency.raw_ratio is not None else "-"
        ratio = f"{latency.ratio:.3f}" if latency is not None and latency.ratio is not None else "-"
        decided = latency.decided_by if latency is not None else "-"
        print(
            f"| {run} | `{test_id.split('::', 1)[-1]}` | {decision.verdict_of('latency')} | {raw} | {ratio} | {decided} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
