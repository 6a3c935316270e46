"""An experiment: how far an unchanged case's median moves from one H100 unit to another, by step length (no GPU).

A baseline's runs are all on one unit. This reads the record runs that made the kernel suite's baselines (one unit)
and the gated runs of the same suite on other units (each report's ``device.uuid`` says which), takes each case's
median over a unit's runs, and prints the unit-to-unit difference by step length: its root mean square in us and in
log-ratio, and the largest. Then the fit the gate's fleet term uses, sd^2 = fleet_sd^2 + (c / median)^2 with fleet_sd
fixed (``GateParams.fleet_sd``, from the clock-normalised pairs) and c by maximum likelihood over the steps under
1 ms (raw medians: such steps do not run at the power cap), overall and per unit, and the automatic fleet line it
gives at a few step lengths.

    python benchmarks/experiments/fleet_spread.py docs/results/h100/2026-12/record \\
        docs/results/h100/2026-12/unit-*/ > docs/results/h100/2026-12/fleet-spread.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from pytest_attnperf.gate.statistics import DEFAULT_PARAMS, GateParams, tolerance

CLASSES = (
    (0.04, "under 40 us"),
    (0.1, "40-100 us"),
    (0.3, "0.1-0.3 ms"),
    (1.0, "0.3-1 ms"),
    (math.inf, "1 ms and over"),
)
FIT_BELOW_MS = 1.0


def unit_medians(paths: list[Path]) -> dict[str, dict[str, float]]:
    """{unit: {case: median of its runs' medians}} over the kernel suite's cases of every report."""
    per_unit: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            document = json.load(handle)
        unit = (document.get("device") or {}).get("uuid") if isinstance(document, dict) else None
        for record in document.get("results", []) if unit else []:
            median = record.get("median_ms")
            if "test_attention.py" in record.get("test_id", "") and median:
                per_unit[unit][record["test_id"].split("::", 1)[-1]].append(float(median))
    return {unit: {case: statistics.median(v) for case, v in cases.items()} for unit, cases in per_unit.items()}


def reports(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*.json*") if p.name.endswith((".json", ".json.gz")) and "cost-" not in p.name
    )


def fit_constant(pairs: list[tuple[float, float]], fleet_sd: float) -> float:
    """c (ms) maximising the normal likelihood of the log-ratios, sd^2 = fleet_sd^2 + (c / median)^2."""
    from scipy.optimize import minimize_scalar

    def negative_log_likelihood(log_c: float) -> float:
        total = 0.0
        for median, log_ratio in pairs:
            variance = fleet_sd**2 + (math.exp(log_c) / median) ** 2
            total += 0.5 * (math.log(variance) + log_ratio**2 / variance)
        return total

    return math.exp(
        minimize_scalar(negative_log_likelihood, bounds=(math.log(1e-6), math.log(0.1)), method="bounded").x
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("record", type=Path, help="the record runs' folder (the baselines' unit)")
    parser.add_argument("others", type=Path, nargs="+", help="folders of gated runs on other units")
    arguments = parser.parse_args(argv)
    recorded = unit_medians(reports(arguments.record))
    if len(recorded) != 1:
        parser.error(f"{arguments.record} holds runs of {len(recorded)} units; the record runs are of one")
    ((base_unit, base),) = recorded.items()
    others: dict[str, dict[str, float]] = {}
    for folder in arguments.others:
        for unit, cases in unit_medians(reports(folder)).items():
            if unit != base_unit:
                others.setdefault(unit, {}).update(cases)
    rows = [(unit, case, base[case], cases[case]) for unit, cases in others.items() for case in cases if case in base]
    print(f"# Unit-to-unit spread of the kernel suite's medians, against the recording unit {base_unit[:12]}\n")
    print(f"{len(others)} other units, {len(rows)} case medians (each the median of a unit's runs), raw (not at the")
    print("baseline's clock).\n")
    print("| step length | cases | RMS difference | log-RMS | largest | largest case |")
    print("|---|---:|---:|---:|---:|---|")
    low = 0.0
    for high, label in CLASSES:
        chosen = [row for row in rows if low <= row[2] < high]
        low = high
        if not chosen:
            continue
        differences = [(row[3] - row[2]) * 1e3 for row in chosen]
        logs = [math.log(row[3] / row[2]) for row in chosen]
        worst = max(chosen, key=lambda row: abs(math.log(row[3] / row[2])))
        print(
            f"| {label} | {len(chosen)} | {math.sqrt(statistics.fmean(d * d for d in differences)):.2f} us "
            f"| {math.sqrt(statistics.fmean(x * x for x in logs)) * 100:.2f} % "
            f"| {(worst[3] / worst[2] - 1) * 100:+.1f} % ({(worst[3] - worst[2]) * 1e3:+.2f} us) "
            f"| `{worst[1]}` on {worst[0][:12]} |"
        )
    params = DEFAULT_PARAMS
    short = [(row[2], math.log(row[3] / row[2])) for row in rows if row[2] < FIT_BELOW_MS]
    fitted = fit_constant(short, params.fleet_sd)
    print(f"\nThe fit over the {len(short)} medians under {FIT_BELOW_MS:g} ms, with the relative part fixed at")
    print(f"{params.fleet_sd * 100:.1f} %: c = {fitted * 1e3:.2f} us (`GateParams.fleet_abs_ms` holds"
          f" {params.fleet_abs_ms * 1e3:.2f} us). Per unit:\n")  # fmt: skip
    for unit in sorted(others):
        mine = [(row[2], math.log(row[3] / row[2])) for row in rows if row[0] == unit and row[2] < FIT_BELOW_MS]
        print(f"- {unit[:12]}: c = {fit_constant(mine, params.fleet_sd) * 1e3:.2f} us over {len(mine)} medians")
    relative_only = GateParams(fleet_abs_ms=0.0)
    print("\nThe automatic line on another unit for a quiet case (3 runs, spread 0.3 %):\n")
    print("| step | relative fleet term only | with the constant term |")
    print("|---:|---:|---:|")
    for median_ms in (0.02, 0.05, 0.1, 0.3, 1.0):
        before = tolerance(3, 0.003, None, relative_only, fleet=True, median_ms=median_ms).tau
        after = tolerance(3, 0.003, None, params, fleet=True, median_ms=median_ms).tau
        print(f"| {median_ms * 1e3:g} us | {before * 100:.1f} % | {after * 100:.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
