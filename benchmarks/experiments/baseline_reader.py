"""How fast the baseline reader is against a plain libyaml load, and how it fares on hostile input (CPU only).

The goal (issues 12 and 23): reading a 20,000-entry file written by the plugin itself costs at most 2x a plain
``yaml.load(text, Loader=yaml.CSafeLoader)`` of the same text, with every validation and line-numbered error
kept, and hostile input is refused in bounded time and memory. The entries are the plugin's own: those
`attnperf update` recorded in baselines/nvidia-h200.yaml, repeated under new test ids up to ``--entries``, and
written through the plugin's writer (``BaselineFile.to_text``).

    python benchmarks/experiments/baseline_reader.py [--entries 20000] [--repeats 3] [--source baselines/nvidia-h200.yaml]
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

from pytest_attnperf.gate.baseline_limits import ENTRY_ITEMS, MAX_FILE_BYTES, MAX_ITEMS
from pytest_attnperf.gate.baselines import BaselineFile, BaselineFileError, load_baseline, parse_baseline_text

SOURCE = Path(__file__).resolve().parents[2] / "baselines" / "nvidia-h200.yaml"


def plugin_written(source: Path, count: int) -> BaselineFile:
    """``count`` entries recorded by the plugin (``source``'s, repeated under new ids), as the writer holds them."""
    recorded = load_baseline(source)
    if recorded is None or not recorded.entries:
        raise SystemExit(f"baseline_reader: no entries in {source}")
    originals = list(recorded.entries.items())
    entries = {}
    for index in range(count):
        test_id, entry = originals[index % len(originals)]
        entries[f"{test_id[:-1]}-copy{index // len(originals)}]"] = entry
    return BaselineFile(Path("gpu.yaml"), recorded.device, recorded.environment, entries)


def best_of(repeats: int, function: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()  # CPU time: on a shared machine, wall time measures the neighbours too
        function()
        times.append(time.process_time() - started)
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
    "1,000,000 duplicate keys under entries": "entries:\n" + "".join(f"  k{i % 2}: {i}\n" for i in range(1_000_000)),
    "550,000 keys, each once": "".join(f"k{i}: {i}\n" for i in range(550_000)),
    "1,000,000 duplicate keys on one line (flow)": "a: {" + ", ".join(f"k{i % 2}: {i}" for i in range(1_000_000)) + "}\n",
    f"{MAX_ITEMS + 1:,} items (one over the cap)": "a: [" + "1," * MAX_ITEMS + "1]\n",
    f"{(MAX_FILE_BYTES >> 20) + 1} MiB of comments (over the size cap)": "#" * (MAX_FILE_BYTES + (1 << 20)),
}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", type=Path, default=SOURCE, help="a baseline file the plugin wrote")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gpu.yaml"
        path.write_text(plugin_written(arguments.source, arguments.entries).to_text(), encoding="utf-8")
        text = path.read_text(encoding="utf-8")
        items = sum(text.count(mark) for mark in ":,-?")
        plain = best_of(arguments.repeats, lambda: yaml.load(text, Loader=yaml.CSafeLoader))
        ours = best_of(arguments.repeats, lambda: load_baseline(path))
    print(
        f"# Baseline reader: {arguments.entries:,} plugin-written entries ({arguments.source.name}'s, repeated), "
        f"{len(text) / 2**20:.1f} MiB, {items:,} YAML items ({items / arguments.entries:.0f} per entry; the cap "
        f"assumes {ENTRY_ITEMS}), best of {arguments.repeats}\n"
    )
    print("| reader | CPU seconds | per entry |")
    print("|---|---:|---:|")
    print(f"| plain yaml.load(CSafeLoader) | {plain:.3f} | {plain / arguments.entries * 1e3:.3f} ms |")
    print(f"| load_baseline (validated, line numbers) | {ours:.3f} | {ours / arguments.entries * 1e3:.3f} ms |")
    print(f"\nratio: {ours / plain:.2f} (goal: at most 2.00)\n")
    print(f"caps: {MAX_ITEMS:,} YAML items, {MAX_FILE_BYTES:,} bytes\n")
    print("| hostile input | size | refused in | peak memory | message |")
    print("|---|---:|---:|---:|---|")
    for name, hostile in HOSTILE.items():
        tracemalloc.start()
        started = time.perf_counter()
        try:
            if len(hostile) > MAX_FILE_BYTES:  # the size cap is the file reader's: read it from disk
                with tempfile.TemporaryDirectory() as folder:
                    (Path(folder) / "h.yaml").write_text(hostile, encoding="utf-8")
                    started = time.perf_counter()
                    load_baseline(Path(folder) / "h.yaml")
            else:
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
