"""An experiment: where a kernel comes near the power cap, and what `--attnperf-power=auto` saves, from committed
JSON reports, with no GPU.

    python benchmarks/experiments/power_window_policy.py --baselines baselines/nvidia-h100-80gb-hbm3.yaml \\
        docs/results/h100/2026-12/record/report-run*.json.gz docs/results/h100/2026-12/cost/report-after-*.json.gz

Per kernel-time bin: the cases, the most any drew back to back over its GPU's power limit (``burst_power_w``, the
power window) and how many spent most of their timing power-capped (NVML). Then, per report that has a ``power``
phase, the window's total time and the part ``auto`` keeps in a gated run (a kernel of ``CAP_KERNEL_MS`` or more
whose entry in ``--baselines`` has a recorded power; every case here is latency-gated): the rest is saved.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
from pathlib import Path
from typing import Any

from pytest_attnperf.gate.baselines import load_baseline
from pytest_attnperf.gate.power import CAP_KERNEL_MS, power_window_skip

BINS_MS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, float("inf"))


def _results(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return list(json.load(handle)["results"])


def _near_cap(reports: list[Path]) -> list[str]:
    rows = []
    for path in reports:
        for result in _results(path):
            gpu, state = result.get("gpu") or {}, result.get("session_gpu_state") or {}
            if result.get("median_ms") and state.get("power_limit_w"):
                burst = gpu.get("burst_power_w")
                share = burst / state["power_limit_w"] if isinstance(burst, (int, float)) else None
                rows.append((result["median_ms"], share, (gpu.get("power_capped_fraction") or 0) >= 0.5))
    lines = [
        "| kernel time | cases | most back-to-back power / limit | mostly power-capped |",
        "| --- | --- | --- | --- |",
    ]
    for low, high in itertools.pairwise(BINS_MS):
        inside = [row for row in rows if low <= row[0] < high]
        shares = [share for _, share, _ in inside if share is not None]
        if inside:
            most = f"{max(shares):.2f}" if shares else "-"
            capped = sum(capped for *_, capped in inside)
            lines.append(f"| {low:g}-{high:g} ms | {len(inside)} | {most} | {capped} |")
    return lines


def _saving(reports: list[Path], baselines: Path) -> list[str]:
    baseline = load_baseline(baselines)
    entries = baseline.entries if baseline is not None else {}
    lines = []
    for path in reports:
        total = kept = 0.0
        for result in _results(path):
            spent = (result.get("phases_ms") or {}).get("power") or 0.0
            entry = entries.get(result["test_id"])
            total += spent
            skip = power_window_skip(
                "auto",
                recording=False,
                baseline_median_ms=entry.median_ms if entry is not None else None,
                baseline_power_w=entry.power_w if entry is not None else None,
                median_ms=result.get("median_ms") or 0.0,
            )
            kept += spent if skip is None else 0.0
        if total:
            lines.append(f"{path}: power window {total / 1e3:.1f} s, auto keeps {kept / 1e3:.1f} s")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports (.json or .json.gz) of GPU runs")
    parser.add_argument("--baselines", type=Path, required=True, help="the baseline file a gated run would use")
    arguments = parser.parse_args(argv)
    print(f"power window threshold CAP_KERNEL_MS = {CAP_KERNEL_MS:g} ms\n")
    print("\n".join(_near_cap(arguments.reports)))
    print()
    print("\n".join(_saving(arguments.reports, arguments.baselines)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
