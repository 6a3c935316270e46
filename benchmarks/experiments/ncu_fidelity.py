"""The plugin's median against Nsight Compute's kernel durations (ncu --clock-control none), in time and in cycles.

On the GPU machine:
    python3 benchmarks/experiments/ncu_fidelity.py plugin > plugin.json       # the plugin's medians (time, and time x clock)
    ncu --clock-control none --nvtx --nvtx-include "regex:case-.*/" \
        --metrics gpu__time_duration.sum,sm__cycles_elapsed.max \
        --csv --page raw python3 benchmarks/experiments/ncu_fidelity.py profile > ncu.csv
    python3 benchmarks/experiments/ncu_fidelity.py compare plugin.json ncu.csv
Each case runs once inside an NVTX range named case-<backend>-<length>; ncu times every kernel
in it (caches flushed, as the plugin does); the case's duration is the sum of its kernels. In
cycles the comparison does not depend on the clock each tool ran at: the plugin's cycles are the
median over its samples of time x that sample's SM clock, ncu's the sum of sm__cycles_elapsed.max.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import sys
from collections import defaultdict

import torch

from pytest_attnperf.backends.registry import REGISTRY
from pytest_attnperf.measure.device import describe_device
from pytest_attnperf.measure.inputs import make_qkv
from pytest_attnperf.measure.measurement import measure
from pytest_attnperf.measure.memory import DoesNotFit, release_memory
from pytest_attnperf.measure.timing import spin_up
from pytest_attnperf.session.case_runner import make_workload
from pytest_attnperf.spec.options import TimingConfig
from pytest_attnperf.spec.shapes import AttnShape

SEQLENS = (1024, 4096, 16384)
CASE_NAME = re.compile(r"(case-[^:\s\"/]+)")
BACKENDS = ("sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "flash-attn", "flex", "eager")


def cases() -> list[tuple[str, int]]:
    return [(name, seqlen) for seqlen in SEQLENS for name in BACKENDS]


def run(mode: str) -> int:
    device = torch.device("cuda", torch.cuda.current_device())
    info = describe_device(device)
    if mode == "plugin":
        spin_up(device, 1.0)
    medians = {}
    for name, seqlen in cases():
        backend = REGISTRY.get(name)
        shape = AttnShape(q_len=seqlen, k_len=seqlen)
        if backend.unsupported_reason(shape, info):
            continue
        workload = make_workload(backend, make_qkv(shape, device=device), "forward")
        if mode == "plugin":
            try:
                timing = measure(workload, device, TimingConfig(min_samples=20)).timing
            except DoesNotFit:
                continue
            cycles = [t * f * 1e3 for t, f in zip(timing.samples_ms, timing.clocks_mhz, strict=True) if f]
            medians[f"case-{name}-{seqlen}"] = {
                "ms": timing.median_ms,
                "cycles": statistics.median(cycles) if cycles else None,
                "clock_mhz": statistics.median(f for f in timing.clocks_mhz if f) if cycles else None,
            }
        else:
            for _ in range(3):  # compile and autotune outside the profiled range
                workload()
            torch.cuda.synchronize(device)
            torch.cuda.nvtx.range_push(f"case-{name}-{seqlen}")
            workload()
            torch.cuda.synchronize(device)
            torch.cuda.nvtx.range_pop()
        release_memory(device)
    if mode == "plugin":
        print(json.dumps(medians))
    return 0


def compare(plugin_path: str, ncu_path: str) -> int:
    with open(plugin_path, encoding="utf-8") as handle:
        plugin = {
            case: value if isinstance(value, dict) else {"ms": value} for case, value in json.load(handle).items()
        }
    durations: dict[str, float] = defaultdict(float)
    cycles: dict[str, float] = defaultdict(float)
    kernels: dict[str, int] = defaultdict(int)
    with open(ncu_path, encoding="utf-8", errors="replace") as handle:
        lines = [line for line in handle if line.startswith('"')]
    reader = csv.DictReader(lines)
    for row in reader:
        # The NVTX column reads '<pid>  "<default domain>:case-flex-4096:none:...".
        found = next((CASE_NAME.search(value) for value in row.values() if value and "case-" in value), None)
        value = row.get("gpu__time_duration.sum")
        if found is None or not value:
            continue
        try:
            nanoseconds = float(value.replace(",", ""))
            elapsed = float((row.get("sm__cycles_elapsed.max") or "nan").replace(",", ""))
        except ValueError:
            continue  # the units row
        case = found.group(1)
        durations[case] += nanoseconds / 1e6
        cycles[case] += elapsed
        kernels[case] += 1
    print("| case | plugin median (ms) | ncu kernel sum (ms) | kernels | ratio | plugin clock (MHz) | cycles ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case, measured in plugin.items():
        median = measured["ms"]
        if case not in durations:
            print(f"| {case[5:]} | {median:.4f} | not profiled | - | - | - | - |")
            continue
        ratio = median / durations[case]
        ours, theirs = measured.get("cycles"), cycles.get(case)
        cycle_ratio = f"{ours / theirs:.3f}" if ours and theirs and theirs == theirs else "-"
        clock = f"{measured['clock_mhz']:.0f}" if measured.get("clock_mhz") else "-"
        print(
            f"| {case[5:]} | {median:.4f} | {durations[case]:.4f} | {kernels[case]} | {ratio:.3f} | {clock} | {cycle_ratio} |"
        )
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    sys.exit(run(sys.argv[1]))
