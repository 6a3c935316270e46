"""The gate validated live, end to end through ``pytest --attnperf`` (not a replay, not direct measure() calls).

Stages, which may run in different calls on different machines (another GPU unit):

- ``record``: ``attnperf update --runs R`` of ``benchmarks/gate_validation`` records the unchanged row of
  every case on the seeded inputs and the power-heavier row on the inputs rounded to k fractional bits;
  the +3 % / +5 % rows get the unchanged row's entry (the same kernel, before the extra work).
- ``gate``: trials numbered 0 to TRIALS-1, each gating every case's four rows (rotated per trial), run K at a
  time (``--trials-per-process``) in one ``pytest --attnperf`` process: the trial is a parameter of the test
  (``[case-row-tN]``, its baseline entry the recorded ``[case-row]`` one, copied), so the plugin's own
  re-measurement of ambiguous items at the session's end applies to every trial's items. A process is
  started only if it should end within ``--budget-s`` (the last one takes as many trials as fit); a cut-off
  run keeps every finished process's report, and another call continues the numbering (``--first-trial``, or
  by itself where ``--out`` already holds reports).
- ``summarise``: the summary again, from the reports under ``raw/`` of one or more folders (several calls).

Writes under ``--out``: ``baselines/<gpu>.yaml`` (recorded, or the ones gated against), ``raw/trials-A-B.json``
(the plugin's JSON report of the process that ran trials A to B: every case's samples, clocks, mean power and
machine reference, plus ``gate_validation``: its trials, exit status, wall time and command),
``gate-validation-samples.json.gz`` (the same records grouped per trial, their ids without the trial),
``gate-validation-live.json`` (the summary, in the form of gate-validation.json: "injected" is the delivered
slowdown in *wall time*, with cycles beside it) and ``gate-validation.md``.

On the GPU machine (the estimate is printed first; BUDGET_S bounds each call):
    python benchmarks/gate_validation_live.py all --out "$OUT"                            # record, then trials
    FIRST_TRIAL=9 python benchmarks/gate_validation_live.py gate --out "$OUT" --baselines prev/baselines  # later
    python benchmarks/gate_validation_live.py summarise --out all/ call1/ call2/           # no GPU
A CPU run of the script itself: GATE_VALIDATION_CASES=eager-256 TRIALS=2 ... --device cpu
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SUITE = HERE / "gate_validation"
sys.path.insert(0, str(SUITE))

from live_cases import ALL_CASES, CASES, EXTRA, ROWS, item_id, parse_item_id  # noqa: E402

# Rough costs (s) for the estimate before anything ran, and for the size of a call's first process: a pytest
# process's start (python, torch, CUDA, the session's spin-up and reference), flex's compilation (once a process),
# and one test (warm-up <= 1 s, sampling, power window, reference; an ambiguous one's cool-down and re-measurement
# at the session's end). From the H100 run of December 2026 (docs/results/h100/2026-12/live.log): 144 s for five
# processes of 16 tests (29 s each), the last one's pytest session 23 s of it, so at most about 1.45 s a test;
# START_S + 16 PER_TEST_S = 33 s is on the safe side, as a process cut off by the call's end loses all its trials. Once a process ran, its report's
# timestamps replace them: its start (wall time outside its tests) and a trial's time, the slowest seen, + 5 %.
START_S, FLEX_COMPILE_S, PER_TEST_S, MARGIN = 10.0, 15.0, 1.45, 1.05
RAW_FILE = re.compile(r"^trials-(\d+)-(\d+)\.json(?:\.gz)?$")  # committed gzipped
OLD_RAW_FILE = re.compile(r"^trial-(\d+)\.json(?:\.gz)?$")  # one process a trial (the December 2026 run)
ALL_COMMAND = "python benchmarks/gate_validation_live.py all --out $OUT"
# The variables that change what a call does, shown in its command line: the plugin's options (PYTEST_ADDOPTS, e.g.
# the machine reference's placement) and the power-heavier row's rounding among them.
ENVIRONMENT = (
    "PYTEST_ADDOPTS",
    "GATE_VALIDATION_ROUNDING",
    "GATE_VALIDATION_CASES",
    "TRIALS",
    "TRIALS_PER_PROCESS",
    "FIRST_TRIAL",
    "BUDGET_S",
    "RECORD_RUNS",
)


def estimate_s(cases: list[str], rows: int, processes: int) -> float:
    """The record stage's processes (each of the cases' rows once), before anything ran."""
    compile_s = FLEX_COMPILE_S if any(case.startswith("flex") for case in cases) else 0.0
    return processes * (START_S + compile_s + PER_TEST_S * len(cases) * rows)


@dataclass
class Pace:
    """What a gated process of N trials costs: the rough costs until one has run, then the slowest measured."""

    cases: list[str]
    starts_s: list[float] = field(default_factory=list)
    trials_s: list[float] = field(default_factory=list)

    def predict_s(self, trials: int) -> float:
        if not self.trials_s:
            compile_s = FLEX_COMPILE_S if any(case.startswith("flex") for case in self.cases) else 0.0
            return START_S + compile_s + trials * PER_TEST_S * len(self.cases) * len(ROWS)
        return MARGIN * (max(self.starts_s) + trials * max(self.trials_s))

    def fitting(self, wanted: int, left_s: float) -> int:
        """The most trials (up to wanted) one process can run and end within left_s."""
        low, high = 0, wanted  # predict_s grows with the trials: bisected, as wanted may be any TRIALS_PER_PROCESS
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if self.predict_s(middle) <= left_s else (low, middle - 1)
        return low

    def learn(self, wall_s: float, cost: dict[str, Any] | None, trials: int) -> None:
        first, last = (cost or {}).get("first_test_at"), (cost or {}).get("last_test_at")
        span = last - first if isinstance(first, float | int) and isinstance(last, float | int) else wall_s - START_S
        self.starts_s.append(max(wall_s - span, 0.0))
        self.trials_s.append(max(span, 0.0) / trials)

    def plan(self, first: int, total: int, per_process: int, left_s: float) -> list[int]:
        """The trial counts of the processes that would start within left_s, by the current costs."""
        counts: list[int] = []
        while first < total and (count := self.fitting(min(per_process, total - first), left_s)):
            counts.append(count)
            first, left_s = first + count, left_s - self.predict_s(count)
        return counts


def pytest_command(out_json: Path | None, baselines: Path, device: str) -> list[str]:
    # --attnperf-power=on: every row reports its mean power (mean_power_w), the short cases' too.
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--attnperf",
        f"--attnperf-baselines={baselines}", f"--attnperf-device={device}", "--attnperf-fingerprint=off",
        "--attnperf-missing=fail", "--attnperf-power=on", str(SUITE / "test_live_gate.py"),
    ]  # fmt: skip
    if out_json is not None:
        command.append(f"--attnperf-json={out_json}")
    return command


def _write_baseline(path: Path, document: dict[str, Any]) -> None:
    from pytest_attnperf.gate.baseline_schema import HEADER, dump_yaml

    partial = path.with_name(path.name + ".partial")  # never a half-written baseline file
    partial.write_text(HEADER + dump_yaml(document), encoding="utf-8")
    partial.replace(path)


def record(arguments: argparse.Namespace, baselines: Path) -> None:
    env = {**os.environ, "GATE_VALIDATION_PHASE": "record", "GATE_VALIDATION_ROWS": "unchanged,power"}
    (arguments.out / "record").mkdir(parents=True, exist_ok=True)
    for stale in (arguments.out / "record").glob("report-run*.json"):  # an earlier record's: not these baselines'
        stale.unlink()
    command = [
        sys.executable, "-m", "pytest_attnperf.cli", "update", "--runs", str(arguments.record_runs),
        f"--attnperf-baselines={baselines}", f"--attnperf-device={arguments.device}", "-p", "no:cacheprovider",
        "-q", "--attnperf-fingerprint=off", str(SUITE / "test_live_gate.py"),
        # each record run's report (report-run1.json, ...): the readings the baselines were made from
        f"--attnperf-json={arguments.out / 'record' / 'report.json'}",
    ]  # fmt: skip
    if arguments.device == "cpu":  # the script's own CPU run, on a shared machine: its medians are not the point
        command.append("--attnperf-allow-busy-cpu")
    print("record:", " ".join(command[1:]), flush=True)
    code = subprocess.call(command, env=env)
    if code not in (0, 1):
        raise SystemExit(f"record failed (exit {code})")
    alias_extra_rows(baselines)


def alias_extra_rows(baselines: Path) -> None:
    """The +3/+5 % rows' entries: the unchanged row's (the same kernel, before the extra work)."""
    for path in baseline_files(baselines):
        document = baseline_document(path)
        entries = document["entries"]
        for test_id in list(entries):
            for row in EXTRA:
                if test_id.endswith("-unchanged]"):
                    entries[test_id.replace("-unchanged]", f"-{row}]")] = entries[test_id]
        _write_baseline(path, document)


def baseline_document(path: Path) -> dict[str, Any]:
    """A baseline file's YAML, its entries an object of objects; a broken one is refused by name."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SystemExit(f"{path}: not a readable baseline file ({error})") from None
    entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(entry, dict) for entry in entries.values()):
        raise SystemExit(f"{path}: not a baseline file written by attnperf update (expected an object with entries)")
    return document


def baseline_files(baselines: Path) -> list[Path]:
    files = sorted(baselines.glob("*.yaml"))
    if not files:
        raise SystemExit(f"no baseline file (*.yaml) in {baselines}: run the record stage first, or give "
                         "--baselines the folder it wrote")  # fmt: skip
    return files


def trial_baselines(baselines: Path, into: Path, trials: list[int]) -> None:
    """The recorded entries (``[case-row]``) copied under each trial's item id (``[case-row-tN]``), into ``into``:
    the plugin looks an entry up by the item's id, and every trial is gated against the same recorded one."""
    into.mkdir(parents=True, exist_ok=True)
    for path in baseline_files(baselines):
        document = baseline_document(path)
        copies: dict[str, Any] = {}
        for test_id, entry in document["entries"].items():
            try:
                case, row, trial = parse_item_id(test_id)
            except ValueError as error:
                raise SystemExit(f"{path}: {error}: not the record stage's baselines") from None
            if trial is not None:
                raise SystemExit(f"{path}: {test_id} names a trial; expected the record stage's [case-row] entries")
            for index in trials:
                copies[test_id.replace(f"[{item_id(case, row, None)}]", f"[{item_id(case, row, index)}]")] = entry
        _write_baseline(into / path.name, {**document, "entries": copies})


def trials_on_disk(raw: Path) -> dict[int, Path]:
    """The trials a folder's reports hold, by their file names."""
    found: dict[int, Path] = {}
    for path in sorted(raw.glob("*.json*")):
        if match := RAW_FILE.match(path.name):
            found.update((index, path) for index in range(int(match[1]), int(match[2]) + 1))
        elif match := OLD_RAW_FILE.match(path.name):
            found[int(match[1])] = path
    return found


def first_trial(arguments: argparse.Namespace) -> int:
    """Where this call's numbering starts (--first-trial, else after the reports --out holds), checked."""
    done = trials_on_disk(arguments.out / "raw")
    first = arguments.first_trial if arguments.first_trial is not None else max(done, default=-1) + 1
    if first >= arguments.trials:
        raise SystemExit(
            f"gate: nothing to run: --trials {arguments.trials} is the total (trials 0-{arguments.trials - 1}) and "
            f"this call would start at trial {first}" + (f" ({arguments.out / 'raw'} holds trials up to "
            f"{max(done)})" if done else "") + "; raise --trials (TRIALS) to run more"
        )  # fmt: skip
    clash = sorted(index for index in done if first <= index < arguments.trials)
    if clash:
        raise SystemExit(
            f"gate: {done[clash[0]]} already holds trial {clash[0]}: give --first-trial {max(done) + 1} (FIRST_TRIAL) "
            "to continue after it, or another --out"
        )
    return first


def _command_line(arguments: argparse.Namespace, argv: list[str]) -> str:
    """How this call was made, its variables included, --out as $OUT."""
    variables = [f"{name}={shlex.quote(os.environ[name])}" for name in ENVIRONMENT if name in os.environ]
    words = [*variables, "python", "benchmarks/gate_validation_live.py", *map(shlex.quote, argv)]
    return " ".join(words).replace(shlex.quote(str(arguments.out)), "$OUT")


def gate(arguments: argparse.Namespace, baselines: Path, cases: list[str], first: int, deadline: float) -> int:
    """Run trials first..TRIALS-1, K a process, while the next process should end before the deadline; 0, or 1
    where a process wrote no report (what finished before it stays under raw/)."""
    raw = arguments.out / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    pace, index, started = Pace(cases), first, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="attnperf-live-") as scratch:
        while index < arguments.trials:
            left_s = deadline - time.perf_counter()
            count = pace.fitting(min(arguments.trials_per_process, arguments.trials - index), left_s)
            if not count:
                print(
                    f"gate: stopping before trial {index}: one more process needs about {pace.predict_s(1):.0f} s, "
                    f"{max(left_s, 0):.0f} s of --budget-s are left; continue with --first-trial {index} "
                    f"(FIRST_TRIAL={index}) in another call",
                    flush=True,
                )
                break
            numbers = list(range(index, index + count))
            derived = Path(scratch) / f"baselines-{index}"
            trial_baselines(baselines, derived, numbers)
            path = raw / f"trials-{numbers[0]:03d}-{numbers[-1]:03d}.json"
            partial = path.with_name(path.name + ".partial")  # a report only once its process ended
            partial.unlink(missing_ok=True)  # a cut-off call's
            env = {**os.environ, "GATE_VALIDATION_PHASE": "gate", "GATE_VALIDATION_TRIAL": str(index),
                   "GATE_VALIDATION_TRIAL_COUNT": str(count)}  # fmt: skip
            env.pop("GATE_VALIDATION_ROWS", None)
            began = time.perf_counter()
            code = subprocess.call(pytest_command(partial, derived, arguments.device), env=env)
            wall_s = time.perf_counter() - began
            if not partial.exists():
                print(f"gate: trials {index}-{numbers[-1]}: pytest wrote no report (exit {code}); stopping", flush=True)
                return 1
            if code not in (0, 1):  # not a whole session (its held items were not measured again): not gathered
                partial.replace(path.with_name(f"{path.name}.exit-{code}"))
                print(f"gate: trials {index}-{numbers[-1]}: pytest exited {code}; its report is set aside as "
                      f"{path.name}.exit-{code}; stopping", flush=True)  # fmt: skip
                return 1
            document = json.loads(partial.read_text(encoding="utf-8"))
            document["gate_validation"] = {
                "trials": numbers, "exit": code, "wall_s": round(wall_s, 1), "command": arguments.command_line,
                "baselines": str(baselines),  # gated against these entries, copied under each trial's id
            }  # fmt: skip
            partial.write_text(json.dumps(document) + "\n", encoding="utf-8")
            partial.replace(path)
            expected, found = count * len(cases) * len(ROWS), len({record["test_id"] for record in document["results"]})
            if found != expected:
                print(f"gate: {path.name} holds {found} of the {expected} items' records", flush=True)
            pace.learn(wall_s, document.get("cost"), count)
            index += count
            more = sum(pace.plan(index, arguments.trials, arguments.trials_per_process, deadline - time.perf_counter()))
            print(
                f"gate: trials {numbers[0]}-{numbers[-1]} done in {wall_s:.0f} s (exit {code}), "
                f"{time.perf_counter() - started:.0f} s in all; measured: start {pace.starts_s[-1]:.0f} s, "
                f"{pace.trials_s[-1]:.1f} s a trial; {arguments.trials - index} to go, about {more} within --budget-s",
                flush=True,
            )
    return 0


def gathered(folders: list[Path]) -> list[dict[str, Any]]:
    """Every trial of the reports under each folder's raw/, in the form of gate-validation-samples.json.gz: one
    group a trial, its records' ids without the trial (the recorded entries' ids), its process's exit status."""
    seen: dict[int, Path] = {}
    trials: list[dict[str, Any]] = []
    for folder in folders:
        reports = sorted(path for path in (folder / "raw").glob("*.json*") if path.name.endswith((".json", ".json.gz")))
        if not reports:
            raise SystemExit(f"no gated trials in {folder / 'raw'} (expected the gate stage's trials-A-B.json)")
        for path in reports:
            document, results, device = _raw_report(path)
            old = OLD_RAW_FILE.match(path.name)
            groups: dict[int, list[dict[str, Any]]] = {}
            for record in results:
                try:
                    case, row, trial = parse_item_id(str(record.get("test_id")))
                except ValueError as error:
                    raise SystemExit(f"{path}: {error}") from None
                if trial is None and old is None:
                    raise SystemExit(f"{path}: {record['test_id']} names no trial (expected [case-row-tN])")
                index = int(old[1]) if trial is None and old is not None else trial
                assert index is not None
                plain = record["test_id"].replace(f"[{item_id(case, row, trial)}]", f"[{item_id(case, row, None)}]")
                groups.setdefault(index, []).append({**record, "test_id": plain})
            for index, records in sorted(groups.items()):
                if index in seen:
                    raise SystemExit(f"trial {index} is in both {seen[index]} and {path}: gather folders whose "
                                     "trials were numbered apart (--first-trial)")  # fmt: skip
                seen[index] = path
                run = document.get("gate_validation") or {}  # checked by _raw_report
                trials.append({"trial": index, "exit": run.get("exit"), "results": records, "device": device,
                               "raw": f"{folder.name}/raw/{path.name}", "command": run.get("command")})  # fmt: skip
    return sorted(trials, key=lambda trial: int(trial["trial"]))


def _raw_report(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """A gated process's report, read as the plugin's report readers read one (every case a whole record, each
    field of its type), with its device record and gate_validation key; anything else refused by name."""
    from pytest_attnperf.runs.stored import ReportError, load_report

    try:
        report = load_report(path)
    except ReportError as error:
        reason = str(error).removeprefix(f"{path}: ")
        raise SystemExit(f"{path}: not a JSON report of pytest --attnperf ({reason})") from None
    device, run = report.document.get("device"), report.document.get("gate_validation")
    if not isinstance(device, dict):
        raise SystemExit(f"{path}: its device is {json.dumps(device)[:60]}; expected the device record (an object)")
    if run is not None and not isinstance(run, dict):
        raise SystemExit(f"{path}: its gate_validation is {json.dumps(run)[:60]}; expected an object")
    return report.document, report.cases, device


def _contents(baselines: Path) -> tuple[tuple[str, bytes], ...]:
    return tuple((path.name, path.read_bytes()) for path in sorted(baselines.glob("*.yaml")))


def gated_against(folders: list[Path]) -> Path | None:
    """The one baselines/ folder the gathered folders were gated against (the same files in each)."""
    found = [folder / "baselines" for folder in folders if list((folder / "baselines").glob("*.yaml"))]
    if len({_contents(baselines) for baselines in found}) > 1:
        raise SystemExit(f"{', '.join(map(str, found))} hold different baseline files: summarise each on its own")
    return found[0] if found else None


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


def summarise(
    trials: list[dict[str, Any]], cases: list[str], baselines: Path | None, then: str | None = None
) -> dict[str, Any]:
    """The summary of the gathered trials (``then``: the command that gathered them, after the ones that ran)."""
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
            # each verdict's own tolerance: another unit is judged at the fleet's line, so one row can hold two
            taus = sorted({round(float(t), 4) for r in records if (t := r.get("tolerance")) is not None})
            power = [r["gpu"]["burst_power_w"] for r in records if (r.get("gpu") or {}).get("burst_power_w")]
            rows.append({
                "case": case.replace("-16K", " 16K").replace("-32K", " 32K").replace("-4K", " 4K"),
                "row": row, "intended": EXTRA.get(row), "injected": round(wall, 4),
                "injected_cycles": None if cycle_delivered is None else round(cycle_delivered, 4),
                "detected": sum(failed(r) for r in records), "trials": len(records),
                "false_alarms": false_alarms, "false_alarm_trials": len(unchanged),
                "tolerance": taus[0] if taus else None, "tolerance_max": taus[-1] if len(taus) > 1 else None,
                "injection": "inputs: baseline rounded" if row == "power" else ALL_CASES[case].injection,
                "decided_by": {name: decided.count(name) for name in sorted(set(decided))},
                "mean_power_w": round(statistics.median(power), 1) if power else None,
                "baseline": "attnperf update, record stage",
            })  # fmt: skip
    unchanged_failed = sum(
        any(test_id.endswith("-unchanged]") and r.get("verdict") == "REGRESSION" for test_id, r in records.items())
        for records in by_trial
    )
    uuids = sorted({str(trial["device"]["uuid"]) for trial in trials if trial["device"].get("uuid")})
    files = sorted(baselines.glob("*.yaml")) if baselines is not None else []
    recorded = sorted({u for path in files for e in baseline_document(path)["entries"].values()
                       for u in e.get("gpu_uuids") or []})  # fmt: skip
    commands = list(dict.fromkeys(str(trial.get("command") or ALL_COMMAND) for trial in trials))
    return {
        "default_tolerance": "auto",
        "tolerance_rule": "per case: clamp(t_0.99 x predictive sd of a new run, 3 %, 10 %) from the baseline's spread",
        "tolerance_floor": 0.03,
        "injected_units": "wall time (injected_cycles: time x SM clock)",
        "sensitivity": rows,
        "gated_runs": {
            "runs": len(trials),
            "failed": unchanged_failed,
            "through_pytest": True,
            "processes": len({trial.get("raw", trial["trial"]) for trial in trials}),  # before: one a trial
        },
        "gated_on": uuids,
        "recorded_on": recorded,
        "device": trials[0]["device"].get("name") if trials else None,
        "command": " ; ".join([*commands, *([then] if then else [])]),
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


def _whole_number(minimum: int, variable: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be a whole number >= {minimum} (here or in {variable}), not {text!r}"
            )
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0 (here or in BUDGET_S), not {text!r}")
    return value


def out_folder(out: Path) -> None:
    """--out made (with its parents) and written to once, or refused by name before anything is measured."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out}: is a file; give a folder (made if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise SystemExit(
            f"--out {out}: cannot write there ({error.strerror or error}); give a folder you can write"
        ) from None


def write_outputs(out: Path, trials: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    # mtime 0: summarising the same trials again writes the same bytes (no churn in the committed file)
    samples = gzip.compress(json.dumps(trials).encode("utf-8"), mtime=0)
    (out / "gate-validation-samples.json.gz").write_bytes(samples)
    (out / "gate-validation-live.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    text = markdown(summary)
    (out / "gate-validation.md").write_text(text, encoding="utf-8")
    print(text)
    if len(summary["gated_on"]) > 1:  # e.g. a later call on a fresh machine: say so, the table mixes the cards
        print(f"note: these trials ran on {len(summary['gated_on'])} cards: {', '.join(summary['gated_on'])}")


def _cases_of(trials: list[dict[str, Any]]) -> list[str]:
    found = {parse_item_id(record["test_id"])[0] for trial in trials for record in trial["results"]}
    return [case for case in ALL_CASES if case in found]


def print_estimate(arguments: argparse.Namespace, cases: list[str], first: int) -> None:
    """What the call should take by the rough costs, and how many trials its budget should hold."""
    record_s = estimate_s(cases, 2, arguments.record_runs) if arguments.stage != "gate" else 0.0
    if arguments.stage != "gate":
        print(
            f"estimate: record {record_s:.0f} s ({arguments.record_runs} runs x {len(cases)} cases x 2 rows)",
            flush=True,
        )
    if arguments.stage == "record":
        return
    pace, left = Pace(cases), arguments.trials - first
    processes = math.ceil(left / arguments.trials_per_process)
    gate_s = processes * pace.predict_s(0) + left * (pace.predict_s(1) - pace.predict_s(0))
    fit = sum(pace.plan(first, arguments.trials, arguments.trials_per_process, arguments.budget_s - record_s))
    print(
        f"estimate: gate trials {first}-{arguments.trials - 1} ({len(cases)} cases x {len(ROWS)} rows each) in "
        f"{processes} pytest processes of at most {arguments.trials_per_process} trials: {gate_s:.0f} s "
        f"({pace.predict_s(0):.0f} s a process's start, {pace.predict_s(1) - pace.predict_s(0):.0f} s a trial)"
        f"{f'; with the record: {record_s + gate_s:.0f} s' if record_s else ''}. Within --budget-s {arguments.budget_s:.0f}: about {fit} "
        f"trials{'' if fit >= left else f', the rest in another call (--first-trial {first + fit})'}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("record", "gate", "all", "summarise"))
    parser.add_argument(
        "folders", nargs="*", type=Path, help="summarise: the folders whose raw/ to gather (default: --out)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--baselines", type=Path, help="the record stage's folder (default: OUT/baselines)")
    parser.add_argument("--trials", type=_whole_number(1, "TRIALS"), default=environ("TRIALS", "20"),
                        help="the total number of trials: numbered 0 to TRIALS-1 (TRIALS)")  # fmt: skip
    parser.add_argument("--trials-per-process", type=_whole_number(1, "TRIALS_PER_PROCESS"),
                        default=environ("TRIALS_PER_PROCESS", "10"), help="at most this many trials in one pytest process (TRIALS_PER_PROCESS)")  # fmt: skip
    parser.add_argument("--first-trial", type=_whole_number(0, "FIRST_TRIAL"), default=environ("FIRST_TRIAL"),
                        help="this call's first trial (FIRST_TRIAL; default: after the ones under OUT/raw, else 0)")  # fmt: skip
    parser.add_argument("--record-runs", type=_whole_number(1, "RECORD_RUNS"), default=environ("RECORD_RUNS", "3"))
    parser.add_argument("--budget-s", type=_seconds, default=environ("BUDGET_S", "560"),
                        help="no process starts that would end later than this after the start (BUDGET_S)")  # fmt: skip
    parser.add_argument("--device", default="cuda")
    arguments = parser.parse_intermixed_args(argv)  # summarise --out DIR A B
    if arguments.folders and arguments.stage != "summarise":
        parser.error(f"folders are for summarise only, not {arguments.stage}")
    if arguments.out.exists() and not arguments.out.is_dir():
        parser.error(f"--out {arguments.out}: is a file; give a folder (made if missing)")
    arguments.command_line = _command_line(arguments, argv)
    if arguments.stage == "summarise":
        named: dict[Path, Path] = {}
        for folder in arguments.folders:  # a folder named twice is gathered once
            named.setdefault(folder.resolve(), folder)
        folders = list(named.values()) or [arguments.out]
        trials = gathered(folders)
        out_folder(arguments.out)
        if arguments.baselines is not None:  # named: it must hold the files (else "no baseline file" by mistake)
            baseline_files(arguments.baselines)
        baselines = arguments.baselines or gated_against(folders)
        write_outputs(arguments.out, trials, summarise(trials, _cases_of(trials), baselines, arguments.command_line))
        return 0
    started = time.perf_counter()
    deadline = started + arguments.budget_s
    cases = [name for name in os.environ.get("GATE_VALIDATION_CASES", "").split(",") if name] or list(CASES)
    unknown = [name for name in cases if name not in ALL_CASES]
    if unknown:
        parser.error(f"GATE_VALIDATION_CASES: unknown {', '.join(unknown)}; expected some of {', '.join(ALL_CASES)}")
    baselines = arguments.baselines or arguments.out / "baselines"
    if trials_on_disk(arguments.out / "raw"):  # a folder's trials are all gated against one set of baselines
        if arguments.stage != "gate":
            raise SystemExit(f"{arguments.out / 'raw'} already holds gated trials: recording again would gate the "
                             "next ones against other baselines; continue with the gate stage, or give another --out")  # fmt: skip
        if _contents(baselines) != _contents(arguments.out / "baselines"):
            raise SystemExit(f"{arguments.out} holds trials gated against other baselines than {baselines}: give "
                             "another --out")  # fmt: skip
    first = first_trial(arguments) if arguments.stage != "record" else 0
    if arguments.stage == "gate":
        baseline_files(baselines)
    print_estimate(arguments, cases, first)
    out_folder(arguments.out)
    if arguments.stage in ("record", "all"):
        baselines.mkdir(parents=True, exist_ok=True)
        record(arguments, baselines)
        print(f"record: done after {time.perf_counter() - started:.0f} s", flush=True)
    if baselines.resolve() != (arguments.out / "baselines").resolve():  # the folder holds what it was gated against
        shutil.copytree(baselines, arguments.out / "baselines", dirs_exist_ok=True)
    if arguments.stage == "record":
        return 0
    status = gate(arguments, baselines, cases, first, deadline)
    if not trials_on_disk(arguments.out / "raw"):
        print(f"gate: no trial ran, so no summary in {arguments.out}", flush=True)
        return 1
    trials = gathered([arguments.out])
    write_outputs(arguments.out, trials, summarise(trials, cases, arguments.out / "baselines"))
    return status


if __name__ == "__main__":
    sys.exit(main())
