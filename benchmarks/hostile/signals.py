"""Hostile-probe family `signals`: signals during --attnperf-update."""

from __future__ import annotations

import signal
import subprocess

from .harness import BASELINE_FILE, TRACEBACK, Outcome, Probe, SignalPlan, big_baseline, current, pytest_argv, trim
from .paths import keep_copy

KILL_ENTRIES = 1000


def whole_after_signal(outcome: Outcome) -> tuple[str, str]:
    """The baseline file must be the old bytes, or a new file that loads; never truncated or mixed."""
    if outcome.timed_out:
        return "DEFECT", "hung after the signal"
    ctx = current()
    path = outcome.workdir / ctx.expand(BASELINE_FILE, outcome.workdir)
    old = (outcome.workdir / "old.yaml").read_bytes()
    leftovers = sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp"))
    left = f"; temp files left: {', '.join(leftovers)}" if leftovers else ""
    if not path.exists():
        return "DEFECT", "the baseline file is gone" + left
    if path.read_bytes() == old:
        state = "old file intact, byte for byte" + left
    else:
        check = subprocess.run([ctx.attnperf, "show", str(path)], capture_output=True, text=True, timeout=300)
        if check.returncode != 0:
            return "DEFECT", "the baseline file is damaged: " + trim(check.stderr or check.stdout, 120)
        state = "replaced by a complete new file" + left
    never = any("never sent" in note or "before the signal" in note for note in outcome.notes)
    if never:
        return "acceptable", "inconclusive: " + state
    noisy = " (printed a traceback)" if TRACEBACK in outcome.out or "INTERNALERROR" in outcome.out else ""
    return "acceptable", state + noisy


def kill_probes() -> list[Probe]:
    files = {BASELINE_FILE: big_baseline(KILL_ENTRIES)}
    copy = keep_copy(BASELINE_FILE, "old.yaml")
    update = pytest_argv("--attnperf-update")
    return [
        Probe(
            "signals",
            f"SIGKILL the moment the temp file appears (update of a {KILL_ENTRIES:,}-entry file)",
            update,
            whole_after_signal,
            files=files,
            setup=copy,
            timeout=300,
            weight=6,
            signal_plan=SignalPlan(signal.SIGKILL, "glob:baselines/.*.tmp"),
        ),
        Probe(
            "signals",
            "SIGINT 2 s after the test passed (while the update loads the old file to merge)",
            update,
            whole_after_signal,
            files=files,
            setup=copy,
            timeout=300,
            weight=6,
            signal_plan=SignalPlan(signal.SIGINT, r"test_a\.py \.", 2.0),
        ),
        Probe(
            "signals",
            "SIGTERM the moment the temp file appears",
            update,
            whole_after_signal,
            files=files,
            setup=copy,
            timeout=300,
            weight=6,
            signal_plan=SignalPlan(signal.SIGTERM, "glob:baselines/.*.tmp"),
        ),
    ]
