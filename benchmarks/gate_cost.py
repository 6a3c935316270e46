"""Where a gated run's time goes, from its --attnperf-json report(s): compilation, warm-up, sampling, references.

    python3 benchmarks/gate_cost.py report.json [more.json ...] [--wall SECONDS ...] [--cost OUT.json ...]

Per report: the cases, the sampled kernel time (the sum of the kept samples), and the wall time of each
step summed over the cases (first call = compilation and autotuning; peak call; warm-up; sampling;
the dispatch fingerprint; the equivalence check with its references). With ``--wall`` (one value per
report, from the stage's log) the rest is start-up, collection and the session's own work.

``--cost`` (one path per report) writes the run's ``cost.json``: ``{"wall_s", "sampled_kernel_s",
"startup_s", "phases_s", "cache", "cases"}``. A report made since the cost block exists carries the
process start, each test's span and the end, so the phases add up to the wall time with nothing
estimated: start-up (interpreter, torch, plugin, collection) to the first test; each step of the cases;
``test_setup`` and ``test_teardown`` (the fixtures: inputs, a backend's import; the caches freed between
modules); ``tests_other`` (what is left inside the tests' calls: the input guard, the test's own checks, the
memory handed back after a case); ``held_first_runs`` and ``cool_down`` (the first measurements of the
ambiguous items the session re-measured at its end, and the cool-downs before those re-runs, whose own time
is among the tests'); ``outside_tests`` (between and after them: the baseline merge, the report).
``lead_spin_s`` and ``warmup_kernel_s`` are parts of the warm-up and sampling phases, named apart.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from typing import Any

PHASES = ("first_call", "peak_call", "warmup", "sampling", "fingerprint", "equivalence")
CASE_PHASES = (
    "release",  # the memory handed back before a case starts (gc, empty_cache)
    "first_call",
    "peak_call",
    "machine_reference",  # the fp16 matmul reading, every 20 s (gate/machine.py)
    "warmup",
    "sampling",
    "timing_other",
    "power",  # the back-to-back window between two ticks of NVML's energy counter
    "out_of_memory",  # a case that does not fit: the failed attempts and the frees between them
    "fingerprint",
    "reference",  # the fp32 references of a problem, on its first backend
    "equivalence",
)


def breakdown(document: dict[str, Any]) -> dict[str, float]:
    """Seconds per step, summed over the cases of one report."""
    totals = dict.fromkeys(PHASES, 0.0)
    totals["kernel"] = 0.0
    for case in document["results"]:
        phases = case.get("phases_ms") or {}
        info = case.get("timing_info") or {}
        totals["first_call"] += phases.get("first_call", 0.0) / 1e3
        totals["peak_call"] += phases.get("peak_call", 0.0) / 1e3
        totals["warmup"] += info.get("warmup_wall_ms", 0.0) / 1e3
        totals["sampling"] += info.get("sampling_wall_ms", 0.0) / 1e3
        totals["fingerprint"] += phases.get("fingerprint", 0.0) / 1e3
        totals["equivalence"] += phases.get("equivalence", 0.0) / 1e3
        totals["kernel"] += sum(case.get("samples_ms") or []) / 1e3
    return totals


def case_phases(document: dict[str, Any]) -> dict[str, float]:
    """Seconds per step of the cases, non-overlapping, plus the lead spin and warm-up kernels inside them.

    A report from before the cost block has no warm-up/sampling phases: they come from its timing info
    (the last measurement of a case), and the timing phase's rest is timing_other."""
    totals = dict.fromkeys((*CASE_PHASES, "lead_spin", "warmup_kernel", "kernel"), 0.0)
    for case in document["results"]:
        phases = dict(case.get("phases_ms") or {})
        info = case.get("timing_info") or {}
        if "timing" in phases:  # the old layout
            warmup, sampling = info.get("warmup_wall_ms", 0.0), info.get("sampling_wall_ms", 0.0)
            phases.update(warmup=warmup, sampling=sampling, timing_other=phases.pop("timing") - warmup - sampling)
            phases["lead_spin"] = info.get("lead_ms", 0.0) * (len(case.get("samples_ms") or []) + info.get(
                "warmup_calls", 0
            ))  # fmt: skip
        for phase in (*CASE_PHASES, "lead_spin"):
            totals[phase] += phases.get(phase, 0.0) / 1e3
        totals["warmup_kernel"] += sum(case.get("warmup_ms") or []) / 1e3
        totals["kernel"] += sum(case.get("samples_ms") or []) / 1e3
    return totals


def _cache_state(compile_cache: dict[str, Any]) -> str:
    """warm or cold, as the run found the compile cache: a cold run hits graphs it compiled itself a little ("mixed"
    with misses the most), a warm run after a code change compiles the changed graphs anew (mixed, hits the most)."""
    state = compile_cache.get("state")
    if state != "mixed":
        return "cold" if state == "cold" else "warm"
    return (
        "cold" if int(compile_cache.get("graph_misses") or 0) >= int(compile_cache.get("graph_hits") or 0) else "warm"
    )


def cost_record(document: dict[str, Any], wall_s: float | None = None, cache: str | None = None) -> dict[str, Any]:
    """The run's cost.json, from its report's cost block (and the wall time, when measured outside).

    A report from before the cost block needs the wall time and the cache state from outside; its
    start-up and the time in no phase are then one ``rest``."""
    block = document.get("cost")
    if not block:
        if wall_s is None or cache not in ("warm", "cold"):
            raise SystemExit("this report has no cost block (made before pytest-attnperf recorded one): give its "
                             "--wall and its --cache (warm or cold)")  # fmt: skip
        totals = case_phases(document)
        phases = {phase: round(totals[phase], 3) for phase in CASE_PHASES}
        phases["rest"] = round(wall_s - sum(totals[phase] for phase in CASE_PHASES), 3)
        return {
            "wall_s": round(wall_s, 3),
            "sampled_kernel_s": round(totals["kernel"], 3),
            "startup_s": None,  # not recorded: inside "rest"
            "phases_s": phases,
            "lead_spin_s": round(totals["lead_spin"], 3),
            "warmup_kernel_s": round(totals["warmup_kernel"], 3),
            "cache": cache,
            "compile_cache": None,
            "cases": len(document["results"]),
            "failures": failures(document),
        }
    started = block.get("process_started_at") or block["plugin_loaded_at"]
    wall = wall_s if wall_s is not None else block["finished_at"] - started
    totals = case_phases(document)
    phases = {phase: round(totals[phase], 3) for phase in CASE_PHASES}
    first_test = block.get("first_test_at") or block["finished_at"]
    startup = first_test - started
    # The tests' set-ups (fixtures: inputs, a backend's import) and teardowns apart; a report from before they were
    # recorded keeps them in tests_other.
    setup, teardown = block.get("setup_s", 0.0), block.get("teardown_s", 0.0)
    phases["test_setup"], phases["test_teardown"] = round(setup, 3), round(teardown, 3)
    in_cases = sum(totals[phase] for phase in CASE_PHASES)
    phases["tests_other"] = round(block.get("tests_s", 0.0) - in_cases - setup - teardown, 3)
    # the first runs of the items re-measured at the session's end (not among the tests' spans: the re-runs
    # are) and the cool-downs before those re-runs; a report from before they were recorded keeps them outside
    held, cooling = block.get("held_s", 0.0), block.get("cool_down_s", 0.0)
    phases["held_first_runs"], phases["cool_down"] = round(held, 3), round(cooling, 3)
    phases["outside_tests"] = round(wall - startup - block.get("tests_s", 0.0) - held - cooling, 3)
    compile_cache = block.get("compile_cache") or {}
    in_no_phase = {}
    setups = block.get("test_setup_s") or {}
    for test_id, seconds in (block.get("test_s") or {}).items():
        own = case_phases({"results": [case for case in document["results"] if case["test_id"] == test_id]})
        in_no_phase[test_id] = seconds - setups.get(test_id, 0.0) - sum(own[phase] for phase in CASE_PHASES)
    return {
        "wall_s": round(wall, 3),
        "sampled_kernel_s": round(totals["kernel"], 3),
        "startup_s": round(startup, 3),
        # start-up's parts: the interpreter, imports and collection; then from collection's end to the first test
        "startup_split_s": _startup_split(block, started, first_test),
        "phases_s": phases,
        "lead_spin_s": round(totals["lead_spin"], 3),
        "warmup_kernel_s": round(totals["warmup_kernel"], 3),
        "cache": _cache_state(compile_cache),
        "compile_cache": compile_cache,
        "cases": len(document["results"]),
        "failures": failures(document),
        # where tests_other goes: the tests with the most time outside their cases' phases (and their set-up)
        "tests_other_top": sorted(([t, round(s, 3)] for t, s in in_no_phase.items()), key=lambda row: -row[1])[:10],
        "test_setup_top": sorted(([t, round(s, 3)] for t, s in setups.items()), key=lambda row: -row[1])[:10],
        "first_call_by_backend": first_call_by_backend(document),  # which compilers the first calls wait on
    }


def _startup_split(block: dict[str, Any], started: float, first_test: float) -> dict[str, float] | None:
    """Start-up's parts: interpreter and imports up to the session's start; the session's start (torch, CUDA, the
    spin-up, the machine reference); collection; then up to the first test."""
    marks = [block.get(name) for name in ("session_start_at", "session_ready_at", "collected_at")]
    if not all(isinstance(mark, (int, float)) for mark in marks):
        collected = block.get("collected_at")
        if not isinstance(collected, (int, float)):
            return None  # a report from before the timestamps
        return {
            "to_collected": round(collected - started, 3),
            "collected_to_first_test": round(first_test - collected, 3),
        }
    session_start, session_ready, collected = marks
    return {
        "to_session_start": round(session_start - started, 3),
        "session_start": round(session_ready - session_start, 3),
        "collection": round(collected - session_ready, 3),
        "collected_to_first_test": round(first_test - collected, 3),
    }


def first_call_by_backend(document: dict[str, Any]) -> dict[str, float]:
    """Seconds of first calls per backend, the most first."""
    totals: dict[str, float] = {}
    for case in document["results"]:
        backend = case.get("backend") or "-"
        totals[backend] = totals.get(backend, 0.0) + (case.get("phases_ms") or {}).get("first_call", 0.0) / 1e3
    return {backend: round(seconds, 3) for backend, seconds in sorted(totals.items(), key=lambda item: -item[1])}


def failures(document: dict[str, Any]) -> list[str]:
    return [case["test_id"] for case in document["results"] if case["verdict"] in ("REGRESSION", "MISMATCH")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--wall", type=float, nargs="*", default=[], help="each run's wall time in seconds")
    parser.add_argument("--cost", nargs="*", default=[], help="write each report's cost.json to this path")
    parser.add_argument(
        "--cache", nargs="*", default=[], choices=("warm", "cold"), help="each report's compile cache, for a report "
        "without a cost block"
    )  # fmt: skip
    arguments = parser.parse_args(argv)
    documents = []
    for path in arguments.reports:
        with (gzip.open if path.endswith(".gz") else open)(path, "rt", encoding="utf-8") as handle:
            documents.append(json.load(handle))
    for path, document in zip(arguments.reports, documents, strict=True):  # the line render_results.py reads
        failures = [case["test_id"] for case in document["results"] if case["verdict"] in ("REGRESSION", "MISMATCH")]
        print(f"{path}: {len(document['results'])} cases, sampled kernel time {breakdown(document)['kernel']:.1f} s, "
              f"failures {failures}")  # fmt: skip
    print()
    print("| report | cases | failures | wall s | first call s | peak call s | warm-up s | sampling s | "
          "fingerprint s | equivalence s | rest s | sampled kernel s |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for index, (path, document) in enumerate(zip(arguments.reports, documents, strict=True)):
        totals = breakdown(document)
        failures = [case["test_id"] for case in document["results"] if case["verdict"] in ("REGRESSION", "MISMATCH")]
        wall = arguments.wall[index] if index < len(arguments.wall) else None
        rest = wall - sum(totals[phase] for phase in PHASES) if wall is not None else None
        cells = [f"{totals[phase]:.1f}" for phase in PHASES]
        print(
            f"| {path} | {len(document['results'])} | {', '.join(failures) or 'none'} | "
            f"{'-' if wall is None else f'{wall:.1f}'} | {' | '.join(cells)} | "
            f"{'-' if rest is None else f'{rest:.1f}'} | {totals['kernel']:.1f} |"
        )
    for index, out in enumerate(arguments.cost):
        wall = arguments.wall[index] if index < len(arguments.wall) else None
        with open(out, "w", encoding="utf-8") as handle:
            cache = arguments.cache[index] if index < len(arguments.cache) else None
            json.dump(cost_record(documents[index], wall, cache), handle, indent=2)
            handle.write("\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
