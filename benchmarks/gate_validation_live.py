"""The gate validated live, end to end through ``pytest --attnperf`` (not a replay, not direct measure() calls).

Two stages, which may run in different calls on different machines (another GPU unit):

- ``record``: ``attnperf update --runs R`` of ``benchmarks/gate_validation`` records the unchanged row of
  every case on the seeded inputs and the power-heavier row on the inputs rounded to k fractional bits;
  the +3 % / +5 % rows get the unchanged row's entry (the same kernel, before the extra work).
- ``gate``: T trials, each one ``pytest --attnperf`` process gating every case's four rows, interleaved
  (rotated per trial), with the plugin's own re-measurement of ambiguous cases at the end of the session.

Writes under ``--out``: ``baselines/<gpu>.yaml`` (record), ``raw/trial-N.json`` (every case's samples,
clocks, mean power and machine reference, as the plugin's JSON report), ``gate-validation-samples.json.gz``
(the same, gathered), ``gate-validation-live.json`` (the summary, in the form of gate-validation.json: "injected" is the delivered slowdown in *wall
time*, with cycles beside it) and ``gate-validation.md``.

On the GPU machine (one call, about 10 minutes with the default cases at TRIALS=5; the estimate is printed):
    python benchmarks/gate_validation_live.py all --out "$OUT"
    python benchmarks/gate_validation_live.py record --out "$OUT"                        # one call ...
    python benchmarks/gate_validation_live.py gate --out "$OUT" --baselines prev/baselines  # ... a later one
A CPU run of the script itself: GATE_VALIDATION_CASES=eager-256 TRIALS=2 ... --device cpu
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SUITE = HERE / "gate_validation"
sys.path.insert(0, str(SUITE))

from live_cases import ALL_CASES, CASES, EXTRA, ROWS  # noqa: E402

TEST = "benchmarks/gate_validation/test_live_gate.py::test_gate[{case}-{row}]"
# Rough costs (s) for the time estimate: a pytest process's start (torch, CUDA, the session's spin-up and
# reference), flex's compilation, and one measured test (warm-up <= 1 s, sampling, power window, reference).
START_S, FLEX_COMPILE_S, PER_TEST_S = 20.0, 15.0, 1.2


def estimate_s(cases: list[str], rows: int, processes: int) -> float:
    compile_s = FLEX_COMPILE_S if any(case.startswith("flex") for case in cases) else 0.0
    return processes * (START_S + compile_s + PER_TEST_S * len(cases) * rows)


def pytest_command(out_json: Path | None, baselines: Path, device: str) -> list[str]:
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--attnperf",
        f"--attnperf-baselines={baselines}", f"--attnperf-device={device}", "--attnperf-fingerprint=off",
        "--attnperf-missing=fail", str(SUITE / "test_live_gate.py"),
    ]  # fmt: skip
    if out_json is not None:
        command.append(f"--attnperf-json={out_json}")
    return command


def record(arguments: argparse.Namespace, baselines: Path) -> None:
    env = {**os.environ, "GATE_VALIDATION_PHASE": "record", "GATE_VALIDATION_ROWS": "unchanged,power"}
    command = [
        sys.executable, "-m", "pytest_attnperf.cli", "update", "--runs", str(arguments.record_runs),
        f"--attnperf-baselines={baselines}", f"--attnperf-device={arguments.device}", "-p", "no:cacheprovider",
        "-q", "--attnperf-fingerprint=off", str(SUITE / "test_live_gate.py"),
    ]  # fmt: skip
    print("record:", " ".join(command[1:]), flush=True)
    code = subprocess.call(command, env=env)
    if code not in (0, 1):
        raise SystemExit(f"record failed (exit {code})")
    for path in baselines.glob("*.yaml"):  # the +3/+5 % rows are the unchanged kernel before the extra work
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        entries = document["entries"]
        for test_id in list(entries):
            for row in EXTRA:
                if test_id.endswith("-unchanged]"):
                    entries[test_id.replace("-unchanged]", f"-{row}]")] = entries[test_id]
        from pytest_attnperf.gate.baseline_schema import HEADER, dump_yaml

        path.write_text(HEADER + dump_yaml(document), encoding="utf-8")


def gate(arguments: argparse.Namespace, baselines: Path, cases: list[str]) -> list[dict[str, Any]]:
    raw = arguments.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    trials: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index in range(arguments.trials):
        elapsed = time.perf_counter() - started
        per_trial = elapsed / index if index else estimate_s(cases, len(ROWS), 1)
        if elapsed + per_trial > arguments.budget_s:
            print(f"gate: stopping after {index} trials: the next would pass --budget-s", flush=True)
            break
        env = {**os.environ, "GATE_VALIDATION_PHASE": "gate", "GATE_VALIDATION_TRIAL": str(index)}
        env.pop("GATE_VALIDATION_ROWS", None)
        path = raw / f"trial-{index}.json"
        code = subprocess.call(pytest_command(path, baselines, arguments.device), env=env)
        if not path.exists():
            raise SystemExit(f"trial {index}: pytest wrote no report (exit {code})")
        document = json.loads(path.read_text(encoding="utf-8"))
        trials.append({"trial": index, "exit": code, "results": document["results"], "device": document["device"]})
        print(f"gate: trial {index} done after {time.perf_counter() - started:.0f} s (exit {code})", flush=True)
    return trials


def _latest(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last record of each test (a re-measured case appears once more)."""
    return {result["test_id"]: result for result in results}


def _cycles_ms(result: dict[str, Any]) -> float | None:
    """The median of time x SM clock over the clock the baseline is normalised to: time in cycles, as ms."""
    samples, clocks, reference = (
        result.get("samples_ms") or [],
        result.get("clock_mhz") or [],
        result.get("clock_ref_mhz"),
    )
    cycles = [t * f for t, f in zip(samples, clocks, strict=False) if f]
    return statistics.median(cycles) / reference if cycles and reference else None


def summarise(trials: list[dict[str, Any]], cases: list[str], baselines: Path) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    by_trial = [_latest(trial["results"]) for trial in trials]
    for case in cases:

        def of(row: str, records: dict[str, dict[str, Any]], case: str = case) -> dict[str, Any] | None:
            return next((r for test_id, r in records.items() if test_id.endswith(f"[{case}-{row}]")), None)

        def first_raw(record: dict[str, Any]) -> float | None:
            stages = record.get("stages") or []
            return float(stages[0]["raw_ratio"]) if stages else record.get("latency_ratio")

        def failed(record: dict[str, Any] | None) -> bool:
            return record is not None and (record.get("verdicts") or {}).get("latency") == "REGRESSION"

        unchanged = [r for records in by_trial if (r := of("unchanged", records))]
        if not unchanged:
            continue
        plain_raw = statistics.median(x for r in unchanged if (x := first_raw(r)) is not None)
        plain_cycles = [c for r in unchanged if (c := _cycles_ms(r)) is not None]
        false_alarms = sum(failed(r) for r in unchanged)
        tau = unchanged[0].get("tolerance")
        for row in ROWS[1:]:
            records = [r for records in by_trial if (r := of(row, records))]
            if not records:
                continue
            raws = [x for r in records if (x := first_raw(r)) is not None]
            cycles = [c for r in records if (c := _cycles_ms(r)) is not None]
            # +3/+5 %: against the unchanged row of the same trials (one baseline); power-heavier: against its own
            # baseline, recorded on the rounded inputs (the unchanged row ran other inputs)
            wall = statistics.median(raws) / (plain_raw if row in EXTRA else 1.0) - 1
            base_cycles = statistics.median(plain_cycles) if row in EXTRA and plain_cycles else None
            cycle_delivered = (
                statistics.median(cycles) / base_cycles - 1
                if base_cycles
                else (statistics.median(cycles) / float(records[0]["baseline_median_ms"]) - 1 if cycles else None)
            )
            decided = [str((r.get("stages") or [{}])[-1].get("decided_by")) for r in records]
            power = [r["gpu"]["burst_power_w"] for r in records if (r.get("gpu") or {}).get("burst_power_w")]
            rows.append({
                "case": case.replace("-16K", " 16K").replace("-32K", " 32K").replace("-4K", " 4K"),
                "row": row, "intended": EXTRA.get(row), "injected": round(wall, 4),
                "injected_cycles": None if cycle_delivered is None else round(cycle_delivered, 4),
                "detected": sum(failed(r) for r in records), "trials": len(records),
                "false_alarms": false_alarms, "false_alarm_trials": len(unchanged),
                "tolerance": tau, "injection": "inputs: baseline rounded" if row == "power" else ALL_CASES[case].injection,
                "decided_by": {name: decided.count(name) for name in sorted(set(decided))},
                "mean_power_w": round(statistics.median(power), 1) if power else None,
                "baseline": "attnperf update, record stage",
            })  # fmt: skip
    unchanged_failed = sum(
        any(test_id.endswith("-unchanged]") and r.get("verdict") == "REGRESSION" for test_id, r in records.items())
        for records in by_trial
    )
    uuids = sorted({str(trial["device"]["uuid"]) for trial in trials if trial["device"].get("uuid")})
    recorded = sorted({u for path in baselines.glob("*.yaml") for e in (yaml.safe_load(path.read_text()) or {})
                       .get("entries", {}).values() for u in e.get("gpu_uuids") or []})  # fmt: skip
    return {
        "default_tolerance": "auto",
        "tolerance_rule": "per case: clamp(t_0.99 x predictive sd of a new run, 3 %, 10 %) from the baseline's spread",
        "tolerance_floor": 0.03,
        "injected_units": "wall time (injected_cycles: time x SM clock)",
        "sensitivity": rows,
        "gated_runs": {"runs": len(trials), "failed": unchanged_failed, "through_pytest": True},
        "gated_on": uuids,
        "recorded_on": recorded,
        "device": trials[0]["device"].get("name") if trials else None,
        "command": "python benchmarks/gate_validation_live.py all --out $OUT",
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# The gate, live through pytest --attnperf, on {summary['device']}\n",
        f"{summary['gated_runs']['runs']} gated runs; recorded on {', '.join(summary['recorded_on']) or '(no baseline file)'}"
        f", gated on {', '.join(summary['gated_on']) or '?'}. Delivered in wall time (cycles beside it).\n",
        "| case | row | delivered (wall) | delivered (cycles) | caught | false alarms (unchanged) | decided by |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary["sensitivity"]:
        cycles = "–" if row["injected_cycles"] is None else f"{row['injected_cycles'] * 100:+.1f} %"
        lines.append(
            f"| {row['case']} | {row['row']} | {row['injected'] * 100:+.1f} % | {cycles} | "
            f"{row['detected']}/{row['trials']} | {row['false_alarms']}/{row['false_alarm_trials']} | {row['decided_by']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("record", "gate", "all"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--baselines", type=Path, help="the record stage's folder (default: OUT/baselines)")
    parser.add_argument("--trials", type=int, default=int(os.environ.get("TRIALS", "20")))
    parser.add_argument("--record-runs", type=int, default=int(os.environ.get("RECORD_RUNS", "3")))
    parser.add_argument("--budget-s", type=float, default=float(os.environ.get("BUDGET_S", "560")))
    parser.add_argument("--device", default="cuda")
    arguments = parser.parse_args(argv)
    cases = [name for name in os.environ.get("GATE_VALIDATION_CASES", "").split(",") if name] or list(CASES)
    baselines = arguments.baselines or arguments.out / "baselines"
    record_s = estimate_s(cases, 2, arguments.record_runs) if arguments.stage != "gate" else 0.0
    trial_s = estimate_s(cases, len(ROWS), 1)
    print(
        f"estimate: record {record_s:.0f} s ({arguments.record_runs} runs x {len(cases)} cases x 2 rows); "
        f"{trial_s:.0f} s per gated trial ({len(cases)} cases x {len(ROWS)} rows); "
        f"{arguments.trials} trials: {record_s + arguments.trials * trial_s:.0f} s (stops at --budget-s "
        f"{arguments.budget_s:.0f})",
        flush=True,
    )
    started = time.perf_counter()
    arguments.out.mkdir(parents=True, exist_ok=True)
    if arguments.stage in ("record", "all"):
        baselines.mkdir(parents=True, exist_ok=True)
        record(arguments, baselines)
        print(f"record: done after {time.perf_counter() - started:.0f} s", flush=True)
        if baselines != arguments.out / "baselines":
            shutil.copytree(baselines, arguments.out / "baselines", dirs_exist_ok=True)
    if arguments.stage == "record":
        return 0
    arguments.budget_s -= time.perf_counter() - started
    trials = gate(arguments, baselines, cases)
    with gzip.open(arguments.out / "gate-validation-samples.json.gz", "wt", encoding="utf-8") as handle:
        json.dump(trials, handle)
    summary = summarise(trials, cases, baselines)
    (arguments.out / "gate-validation-live.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    text = markdown(summary)
    (arguments.out / "gate-validation.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
