"""Is the CPU busy with other work? A 20 ms check, torch-free, for CPU runs.

A CPU kernel's median on a contended machine is the scheduler's, not the kernel's: two jobs on a
shared 2-core machine gave medians ×0.002 to ×306 apart, many on multiples of the 4 ms time slice.
Two measured figures say it, both taken over the same short busy loop:

- the share of the loop's wall time during which this thread did not run (``time.thread_time``
  against ``time.perf_counter``): time taken by other processes on this core, or by the hypervisor;
- the other runnable tasks (``procs_running`` of ``/proc/stat``, this thread left out) per CPU of
  the host: more than one each means every core is wanted by someone else (a CPU kernel runs on all).

The 1-minute load average is shown for context only: it still holds a previous run's load (the
runs of `attnperf update` follow each other), so it decides nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

WINDOW_S = 0.02
SAMPLES = 5  # runnable-task counts read across the window
PREEMPTED_LIMIT = 0.25  # this thread lost a quarter of the window: another task shares its core
RUNNABLE_LIMIT = 1.0  # other runnable tasks per host CPU


@dataclass(frozen=True)
class CpuLoad:
    """What one check measured; None where this system cannot tell (no /proc, no thread clock)."""

    preempted: float | None  # share of wall time this thread did not run, 0..1
    runnable_others: float | None  # mean runnable tasks other than this thread, over the window
    host_cpus: int
    load_1min: float | None = None


def _procs_running(stat: Path) -> int | None:
    try:
        with open(stat, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def read_cpu_load(window_s: float = WINDOW_S, *, stat: Path = Path("/proc/stat")) -> CpuLoad:
    """Busy-loop for ``window_s`` on this thread and see how much of it the thread got, and who else ran."""
    counts: list[int] = []
    started, cpu_started = time.perf_counter(), time.thread_time()
    end, next_sample = started + window_s, started
    while (now := time.perf_counter()) < end:
        if now >= next_sample:
            count = _procs_running(stat)
            if count is not None:
                counts.append(count)
            next_sample += window_s / SAMPLES
    wall, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
    try:
        load: float | None = os.getloadavg()[0]
    except OSError:
        load = None
    return CpuLoad(
        preempted=min(1.0, max(0.0, 1.0 - cpu / wall)) if wall > 0 and cpu > 0 else None,
        runnable_others=max(0.0, sum(counts) / len(counts) - 1) if counts else None,
        host_cpus=os.cpu_count() or 1,
        load_1min=load,
    )


def contention_problems(load: CpuLoad) -> list[str]:
    """What says the CPU is busy, each with its figure; empty for a quiet CPU."""
    problems = []
    if load.preempted is not None and load.preempted >= PREEMPTED_LIMIT:
        problems.append(
            f"this thread ran only {100 * (1 - load.preempted):.0f} % of a {WINDOW_S * 1000:.0f} ms busy loop "
            "(other processes or the hypervisor took the rest)"
        )
    if load.runnable_others is not None and load.runnable_others >= RUNNABLE_LIMIT * load.host_cpus:
        problems.append(f"{load.runnable_others:.1f} other tasks wanted the host's {load.host_cpus} CPUs")
    if problems and load.load_1min is not None:
        problems[-1] += f"; 1-minute load average {load.load_1min:.1f}"
    return problems


def cpu_contention(read: CpuLoad | None = None) -> list[str]:
    """Measure now (or judge ``read``, a load given by a caller or a test) and say what is wrong."""
    return contention_problems(read if read is not None else read_cpu_load())
