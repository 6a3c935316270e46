"""The host (CPU) cost of the clock-aware gate's own code per case, so the warm-up and clock reads earn their cost.

    python benchmarks/experiments/gate_overhead.py

Measured on the CPU with synthetic samples (no GPU needed): the per-case verdict (normalisation,
Theil-Sen beta, the tolerance from scipy's t), a 3-run baseline entry, the sampling rules' own
bookkeeping per sample, and the result record's JSON round trip (how records travel to the
pytest-xdist controller and into JUnit). The GPU-side costs (stamp launches, NVML reads, the
profiler) are measured by benchmarks/clock_check.py on the GPU machine.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from pytest_attnperf.gate.checks import GateContext
from pytest_attnperf.gate.evaluate import GatePolicy, decide
from pytest_attnperf.gate.normalise import fit_beta
from pytest_attnperf.gate.recording import entry_from_runs
from pytest_attnperf.gate.results import CaseRecord, flat_record
from pytest_attnperf.measure.sampling import Sample, collect, warm_up
from pytest_attnperf.spec.marks import GateMarks, LatencySpec, MemorySpec


def result(rng: random.Random, samples: int, warmup: int) -> CaseRecord:
    clocks = [1800 * math.exp(rng.gauss(0, 0.01)) for _ in range(samples + warmup)]
    times = [2.0 * (1800 / clock) * math.exp(rng.gauss(0, 0.002)) for clock in clocks]
    return flat_record(
        "t.py::test[sdpa-flash-4K]", "sdpa-flash", "GPU", "gpu", "forward", {"heads": 32}, 4096,
        median_ms=sorted(times[warmup:])[samples // 2], samples_ms=times[warmup:], clock_mhz=clocks[warmup:],
        warmup_ms=times[:warmup], warmup_clock_mhz=clocks[:warmup], peak_bytes=1 << 20,
        latency={"median": 2.0, "samples": samples},
    )  # fmt: skip


def per_call_us(function: Callable[[], Any], repeats: int) -> float:
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats * 1e6


class Instant:
    def take(self, count: int) -> list[Sample]:
        return [Sample(1.0, 1800.0)] * count


def main() -> int:
    rng = random.Random(1)
    baseline = entry_from_runs([result(rng, 30, 20) for _ in range(3)], "")
    marks = GateMarks(latency=LatencySpec(), memory=MemorySpec(), equivalence=None)
    policy = GatePolicy(latency_tolerance=None, memory_tolerance=0.05, missing="warn", updating=False)
    context = GateContext("t.py::test[sdpa-flash-4K]", "GPU", "baselines/gpu.yaml")
    rows = []
    for samples, warmup in ((10, 20), (30, 20), (500, 200)):
        case = result(rng, samples, warmup)

        def verdict(case: CaseRecord = case) -> None:
            decide(case, marks, baseline, policy, context)

        rows.append((f"verdict of one case ({samples} samples + {warmup} warm-up)", per_call_us(verdict, 50)))
        rows.append(
            (
                "  of which the beta fit",
                per_call_us(
                    lambda case=case: fit_beta(case.measurement.samples_ms or [], case.measurement.clock_mhz or []), 50
                ),
            )
        )  # type: ignore[misc]
        text = case.to_json()
        rows.append(
            (
                f"result record to JSON and back ({len(text) / 1024:.0f} KiB)",
                per_call_us(lambda text=text: CaseRecord.from_json(text).to_json(), 50),
            )
        )  # type: ignore[misc]
    rows.append(
        (
            "a 3-run baseline entry (30 + 20 samples each)",
            per_call_us(lambda: entry_from_runs([result(rng, 30, 20) for _ in range(3)], ""), 20),
        )
    )
    source = Instant()
    rows.append(
        (
            "warm-up rule, per sample (to a steady stop)",
            per_call_us(lambda: warm_up(source, cap_ms=1e9, gpu=True), 200) / 80,
        )
    )
    rows.append(
        (
            "sampling rule, per sample (100 samples)",
            per_call_us(lambda: collect(source, 100, threshold_mhz=1485.0, rep_ms=1e9, max_samples=500), 200) / 100,
        )
    )
    print("# Host cost of the gate's own code (CPU, synthetic samples)\n")
    print("| step | µs |")
    print("|---|---:|")
    for name, microseconds in rows:
        print(f"| {name} | {microseconds:,.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
