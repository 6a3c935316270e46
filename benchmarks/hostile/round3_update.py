"""Hostile-probe family `round3-update`: round 3, the update process and the machine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from .harness import (
    BASELINE_FILE,
    FAST,
    QUIET_PLUGINS,
    TEST_ID,
    Classifier,
    FileContent,
    Outcome,
    Probe,
    SignalPlan,
    accepts,
    baseline_with,
    crash,
    current,
    deferred_refusal,
    pytest_argv,
    shell,
)
from .paths import keep_copy

# In the last run of an update (or a plain --attnperf-update run), after the measured test: say who runs, then wait
# long enough to be cancelled in; a run that outlived its cancel would merge after the wait.
WAIT_TEST = """\
import json, os, time


def test_wait():
    index, _, total = os.environ.get("ATTNPERF_RUN", "1/1").partition("/")
    if index == total:
        with open("marker.json.tmp", "w") as handle:
            json.dump({"pid": os.getpid(), "folder": os.environ.get("ATTNPERF_RUNS_DIR", "")}, handle)
        os.replace("marker.json.tmp", "marker.json")
        time.sleep(20)
"""
UPDATE_RUNS = ["{attnperf}", "update", "--runs", "2", *FAST, *QUIET_PLUGINS]
HOLD_LOCK = (
    '{py} -c \'import fcntl, sys, time; h = open(sys.argv[1], "a+b"); fcntl.flock(h, fcntl.LOCK_EX); '
    'open("held", "w").close(); time.sleep(900)\' baselines/{slug}.yaml.lock & holder=$!; '
    "while [ ! -e held ]; do sleep 0.1; done; "
)
SPIN = "for i in $(seq $(( $(nproc) + 1 ))); do {py} -c 'while True: pass' & done; sleep 1; "


def _processes_in(folder: Path) -> list[int]:
    """Processes still working in ``folder`` (their current directory): orphans of a cancelled run."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd") == str(folder):
                    found.append(int(entry.name))
    return found


def cancelled_cleanly(outcome: Outcome) -> tuple[str, str]:
    """After a signal: no process of the run left, its runs folder gone, the baseline file byte for byte the old."""
    if outcome.timed_out:
        return "DEFECT", "hung after the signal"
    if any("never sent" in note or "before the signal" in note for note in outcome.notes):
        return "acceptable", "inconclusive: the signal was never sent"
    marker = outcome.workdir / "marker.json"
    run = json.loads(marker.read_text()) if marker.exists() else {}
    deadline = time.monotonic() + 30
    while _processes_in(outcome.workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _processes_in(outcome.workdir)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if left:
        return "DEFECT", f"process(es) {', '.join(map(str, left))} of the cancelled run still running (orphans)"
    folder = Path(run.get("folder") or "/nonexistent")
    if run.get("folder") and folder.exists():
        kept = ", ".join(sorted(path.name for path in folder.iterdir())) or "empty"
        shutil.rmtree(folder, ignore_errors=True)
        return "DEFECT", f"the update's runs folder was left behind ({kept})"
    path = outcome.workdir / current().expand(BASELINE_FILE, outcome.workdir)
    if path.read_bytes() != (outcome.workdir / "old.yaml").read_bytes():
        return "DEFECT", "the baseline file changed after the cancel"
    problem = crash(outcome)
    if problem:
        return "DEFECT", problem
    return "acceptable", "no process left, runs folder removed, baseline file unchanged byte for byte"


def unchanged_refusal(*needles: str, codes: Sequence[int]) -> Classifier:
    """Refused (naming ``needles``) and the baseline file is the old one, byte for byte."""

    def classify(outcome: Outcome) -> tuple[str, str]:
        verdict, note = deferred_refusal(needles, codes=codes)(outcome)
        path = outcome.workdir / current().expand(BASELINE_FILE, outcome.workdir)
        if path.read_bytes() != (outcome.workdir / "old.yaml").read_bytes():
            return "DEFECT", "the baseline file was rewritten"
        strays = sorted(p.name for p in outcome.workdir.glob("run-*.json") if p.name != "run-1.json")
        if strays:
            return "DEFECT", f"wrote {', '.join(strays)} into the project"
        return verdict, note

    return classify


def round3_update_probes() -> list[Probe]:
    files: dict[str, FileContent] = {BASELINE_FILE: baseline_with(), "test_b.py": WAIT_TEST}
    copy = keep_copy(BASELINE_FILE, "old.yaml")
    update_one = pytest_argv("--attnperf-update")
    stale_run = '[{"test_id": "' + TEST_ID + '", "latency_ms": {"median": 100000.0}}]'
    unbusy = pytest_argv("--attnperf-update", drop=("--attnperf-allow-busy-cpu",))
    # A table of probes, one or two lines each: kept as written.
    # fmt: off
    return [
        *(
            Probe("round3-update", f"`attnperf update --runs 2`, {signal.Signals(signum).name} to it during run 2",
                  UPDATE_RUNS, cancelled_cleanly, files=files, setup=copy, timeout=300, weight=6,
                  signal_plan=SignalPlan(signum, "glob:marker.json"))
            for signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGHUP)
        ),
        Probe("round3-update", "Ctrl-C (SIGINT) during `pytest --attnperf --attnperf-update`, after the measured test",
              update_one, cancelled_cleanly, files=files, setup=copy, timeout=300, weight=4,
              signal_plan=SignalPlan(signal.SIGINT, "glob:marker.json")),
        Probe("round3-update", "stray ATTNPERF_RUN=1/2 in the shell of `pytest --attnperf --attnperf-update`",
              pytest_argv("--attnperf-update", "test_a.py"),
              unchanged_refusal("ATTNPERF_RUN=1/2", "not started by `attnperf update`", codes=(4,)),
              files=files, setup=copy, env={"ATTNPERF_RUN": "1/2"}),
        Probe("round3-update", "stray ATTNPERF_RUN=2/2 ATTNPERF_RUNS_DIR=. with a stale run-1.json (1000x medians)",
              pytest_argv("--attnperf-update", "test_a.py"),
              unchanged_refusal("ATTNPERF_RUN=2/2", "not started by `attnperf update`", codes=(4,)),
              files={**files, "run-1.json": stale_run}, setup=copy, env={"ATTNPERF_RUN": "2/2", "ATTNPERF_RUNS_DIR": "."}),
        Probe("round3-update", "the baseline's lock held by another process (a hung update) during an update",
              HOLD_LOCK + shell([*update_one, "test_a.py"]) + "; rc=$?; kill $holder; exit $rc",
              unchanged_refusal(r"waiting for the lock .*\.lock \(held by", r"gave up after \d+ s", "delete",
                                codes=(1,)),
              files=files, setup=copy, timeout=400, weight=8),
        Probe("round3-update", "`pytest --attnperf --attnperf-update` with nproc+1 busy loops on the CPU",
              SPIN + shell([*unbusy, "test_a.py"]) + "; rc=$?; kill $(jobs -p); exit $rc",
              unchanged_refusal("CPU busy", "not recording baselines measured on a busy CPU",
                                "--attnperf-allow-busy-cpu", codes=(1,)),
              files=files, setup=copy, timeout=300, weight=4),
        Probe("round3-update", "`attnperf update --runs 2 --runs-dir runs` SIGTERMed in run 2 (a job's time limit), then again",
              shell([*UPDATE_RUNS, "--runs-dir", "runs"]) + " & pid=$!; while [ ! -e marker.json ]; do sleep 0.2; done; "
              "kill -TERM $pid; wait $pid; echo \"first call: exit $?\"; rm marker.json; "
              + shell([*UPDATE_RUNS, "--runs-dir", "runs"]),
              accepts(r"first call: exit 143", r"run 1 of 2: kept in .*runs by an earlier call", r"wrote 1 entries"),
              files=files, timeout=400, weight=6, show=r"run 1 of 2: kept in .*"),
        Probe("round3-update", "the same with --attnperf-allow-busy-cpu (recorded, with the warning)",
              SPIN + shell([*unbusy, "--attnperf-allow-busy-cpu", "test_a.py"]) + "; rc=$?; kill $(jobs -p); exit $rc",
              accepts("CPU busy", "1 passed", "wrote 1 entries"), files=files, timeout=300, weight=4),
    ]
    # fmt: on
