"""How fast the baseline reader is against a plain libyaml load, and how it fares on hostile input (CPU only).

The goal (issue 12): reading a 5,000-entry file costs at most 2x a plain
``yaml.load(text, Loader=yaml.CSafeLoader)`` of the same text, with every validation and
line-numbered error kept, and bounded time and memory on hostile input.

    python benchmarks/baseline_reader.py [--entries 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pytest_attnperf.gate.baselines import (
    BaselineEntry,
    BaselineFile,
    BaselineFileError,
    load_baseline,
    parse_baseline_text,
    round_significant,
)
from pytest_attnperf.gate.statistics import geometric_mean, log_spread


def entry(index: int) -> BaselineEntry:
    """A realistic version-2 entry: three runs, clock, beta, fingerprint, shape, environment."""
    medians = tuple(round_significant(value * (1 + index / 1000)) for value in (1.001, 0.998, 1.004))
    return BaselineEntry(
        backend="sdpa-cudnn",
        shape={"batch": 1, "heads": 32, "kv_heads": 8, "q_len": 4096, "k_len": 4096, "head_dim": 128,
               "dtype": "float16", "causal": True, "window": [-1, -1], "scale": None},
        mode="forward",
        latency_ms={"median": round_significant(geometric_mean(list(medians))), "raw_median": 1.02, "iqr": 0.004,
                    "mean": 1.01, "stdev": 0.003, "min": 0.995, "max": 1.05, "samples": 90},
        peak_bytes=268435456,
        fits=True,
        recorded_at="2026-12-01T00:00:00Z",
        environment={"torch": "2.13.0", "cuda": "13.0", "cudnn": "91900", "driver": "580.159.04"},
        runs=3,
        run_medians_ms=medians,
        spread=round_significant(log_spread(list(medians)) or 0.0, 3),
        clock_mhz=1755.0,
        beta=0.94,
        beta_ci=(0.91, 0.97),
        energy_mj=12.5,
        fingerprint={"families": ["cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7"],
                     "variant": "0123456789ab", "kernels": 1},
        gpu_uuids=("GPU-0a1b2c3d-0000-0000-0000-000000000000",),
        plugin_version="0.1.0",
        timing={"warmup": "steady", "warmup_cap_ms": 1000.0, "rep_ms": 100.0, "min_samples": 10, "clock_source": "sm0-timestamps"},
    )  # fmt: skip


def best_of(repeats: int, function: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


HOSTILE = {
    "alias bomb (20 levels of x3)": "a: &a [1, 1, 1]\n"
    + "".join(f"l{i}: &l{i} [*{'a' if i == 0 else f'l{i - 1}'}, *{'a' if i == 0 else f'l{i - 1}'}, *{'a' if i == 0 else f'l{i - 1}'}]\n" for i in range(20)),
    "merge-key chain (30 levels)": "m0: &m0 {a: 1}\n"
    + "".join(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}\n" for i in range(1, 31)),
    "flow nesting 100,000 deep": "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "block nesting 5,000 deep": "".join(" " * i + "k:\n" for i in range(5_000)),
    "an integer of 1,000,000 digits": "a: " + "9" * 1_000_000 + "\n",
    "1,000,000 duplicate keys": "".join(f"k{i % 2}: {i}\n" for i in range(1_000_000)),
    "550,000 keys, each once": "".join(f"k{i}: {i}\n" for i in range(550_000)),
}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gpu.yaml"
        entries = {f"tests/suite/test_attention.py::test_forward[case-{i}]": entry(i) for i in range(arguments.entries)}
        path.write_text(BaselineFile(path, {"name": "NVIDIA H200"}, {}, entries).to_text(), encoding="utf-8")
        text = path.read_text(encoding="utf-8")
        plain = best_of(arguments.repeats, lambda: yaml.load(text, Loader=yaml.CSafeLoader))
        ours = best_of(arguments.repeats, lambda: load_baseline(path))
    print(
        f"# Baseline reader: {arguments.entries:,} entries, {len(text) / 2**20:.1f} MiB, best of {arguments.repeats}\n"
    )
    print("| reader | seconds | per entry |")
    print("|---|---:|---:|")
    print(f"| plain yaml.load(CSafeLoader) | {plain:.3f} | {plain / arguments.entries * 1e3:.3f} ms |")
    print(f"| load_baseline (validated, line numbers) | {ours:.3f} | {ours / arguments.entries * 1e3:.3f} ms |")
    print(f"\nratio: {ours / plain:.2f} (goal: at most 2.00)\n")
    print("| hostile input | size | refused in | peak memory | message |")
    print("|---|---:|---:|---:|---|")
    for name, hostile in HOSTILE.items():
        tracemalloc.start()
        started = time.perf_counter()
        try:
            parse_baseline_text(hostile, Path("hostile.yaml"))
            message = "ACCEPTED"
        except BaselineFileError as error:
            message = error.problem
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(
            f"| {name} | {len(hostile) / 2**20:.2f} MiB | {elapsed:.3f} s | {peak / 2**20:.1f} MiB | {message[:70]} |"
        )
    return 0 if ours / plain <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
