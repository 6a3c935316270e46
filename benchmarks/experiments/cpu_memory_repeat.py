"""The CPU memory gate, run again and again right after an update: how many false alarms?

    python benchmarks/experiments/cpu_memory_repeat.py --runs 20 --out docs/results/cpu/memory-repeat.md

Records the baselines of the repo's CPU suite (``pytest --attnperf tests/suite``) into a scratch folder
with ``--attnperf-update``, then runs the same suite ``--runs`` times against them, each run writing its
results as JSON. Nothing changes between the runs, so every memory ``REGRESSION`` verdict is a false
alarm. The table gives each case's peak over the runs against its baseline: the spread the gate must
tolerate (the default memory tolerance is 5 %). Latency verdicts are counted too, for information only
(a 2-core CPU shared with other work is a noisy clock). Standard library only; run it with the Python
of the environment that has pytest-attnperf installed, from the folder of the code to measure
(``--repo``; ``PYTHONPATH=<checkout>`` runs another checkout's plugin).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_suite(repo: Path, tests: str, baselines: Path, json_path: Path, extra: Sequence[str], *, update: bool) -> int:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--attnperf",
        tests,
        f"--attnperf-baselines={baselines}",
        f"--attnperf-json={json_path}",
        *(["--attnperf-update"] if update else []),
        *extra,
    ]
    completed = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False)
    if not json_path.exists():
        raise SystemExit(
            f"cpu_memory_repeat: the run wrote no JSON (exit {completed.returncode}):\n{completed.stdout[-4000:]}"
        )
    return completed.returncode


def results(path: Path) -> dict[str, dict[str, Any]]:
    return {case["test_id"]: case for case in json.loads(path.read_text(encoding="utf-8"))["results"]}


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.3f}"


def render(
    baseline: dict[str, dict[str, Any]], runs: list[dict[str, dict[str, Any]]], exits: list[int], meta: dict[str, str]
) -> str:
    memory_alarms = [
        sum(case.get("verdicts", {}).get("memory") == "REGRESSION" for case in run.values()) for run in runs
    ]
    latency_alarms = [
        sum(case.get("verdicts", {}).get("latency") == "REGRESSION" for case in run.values()) for run in runs
    ]
    rows = []
    worst = 0.0
    for test_id, recorded in baseline.items():
        peaks = [
            run[test_id]["peak_bytes"] for run in runs if test_id in run and run[test_id].get("peak_bytes") is not None
        ]
        base = recorded.get("peak_bytes")
        alarms = sum(run.get(test_id, {}).get("verdicts", {}).get("memory") == "REGRESSION" for run in runs)
        if base and peaks:
            spread = max(abs(peak - base) / base for peak in peaks) * 100
            worst = max(worst, spread)
            rows.append(
                f"| {test_id.split('::', 1)[-1]} | {_mib(base)} | {_mib(min(peaks))} | {_mib(max(peaks))} | "
                f"{spread:.2f} % | {len(peaks)} | {alarms} |"
            )
        else:
            rows.append(f"| {test_id.split('::', 1)[-1]} | {_mib(base)} | - | - | - | {len(peaks)} | {alarms} |")
    lines = [
        "# The CPU memory gate, repeated right after an update",
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']} ({meta['minutes']} min)",
        f"- machine: {meta['machine']}",
        f"- suite: `pytest --attnperf {meta['tests']}` in `{meta['repo']}`, baselines recorded by one "
        "`--attnperf-update` run, then gated by each run; default tolerances (memory 5 %, latency auto: 3-10 % from the baseline's spread)",
        "",
        f"**{len(runs)} runs, {len(baseline)} cases each: {sum(memory_alarms)} memory false alarms** "
        f"(runs with one or more: {sum(1 for count in memory_alarms if count)}); the largest peak deviation from "
        f"its baseline in any run: {worst:.2f} %. Latency verdicts, for information: {sum(latency_alarms)} "
        f"REGRESSION in {sum(1 for count in latency_alarms if count)} runs; exit codes {sorted(set(exits))}.",
        "",
        "| case | baseline peak (MiB) | min over runs | max over runs | max deviation | runs | memory REGRESSION |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Memory false alarms per run: " + ", ".join(map(str, memory_alarms)) + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--repo", type=Path, default=ROOT, help="run pytest in this folder (default: this checkout)")
    parser.add_argument("--tests", default="tests/suite", help="the suite, relative to --repo")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--code", default="", help="what code ran, for the report (e.g. a commit)")
    parser.add_argument("extra", nargs="*", help="more pytest arguments (after --)")
    arguments = parser.parse_args(argv)
    started, clock = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="attnperf-memory-repeat-") as scratch:
        folder = Path(scratch)
        run_suite(
            arguments.repo, arguments.tests, folder / "baselines", folder / "update.json", arguments.extra, update=True
        )
        baseline = results(folder / "update.json")
        runs, exits = [], []
        for index in range(arguments.runs):
            path = folder / f"run-{index}.json"
            exits.append(
                run_suite(arguments.repo, arguments.tests, folder / "baselines", path, arguments.extra, update=False)
            )
            runs.append(results(path))
            alarms = sum(case.get("verdicts", {}).get("memory") == "REGRESSION" for case in runs[-1].values())
            print(f"run {index + 1}/{arguments.runs}: exit {exits[-1]}, {alarms} memory REGRESSION", file=sys.stderr)
    import torch  # only for the machine line

    meta = {
        "command": "python benchmarks/experiments/cpu_memory_repeat.py " + " ".join(sys.argv[1:]),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": f"{(time.perf_counter() - clock) / 60:.1f}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, {platform.system()} {platform.release()}",
        "tests": arguments.tests,
        "repo": str(arguments.repo) + (f" ({arguments.code})" if arguments.code else ""),
    }
    text = render(baseline, runs, exits, meta)
    print(text)
    if arguments.out is not None:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
